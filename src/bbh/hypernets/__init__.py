"""hypernets."""
