"""The one interface every method speaks: MAP, MC dropout (Gal and Ghahramani 2016), deep
ensembles (Lakshminarayanan et al. 2017), Bayes by Backprop (Blundell et al. 2015), MNF (Louizos
and Welling 2017) and Bayes by Hypernet (Pawlowski et al., arXiv 1711.01297).

A method is an ``nn.Module`` that wraps an ordinary primary network and offers

- ``loss(x, y, *, num_data, kl_weight) -> (loss, logs)``: the per-example objective
  ``mean NLL + kl_weight * T * KL / num_data`` (``num_data`` = training-set size, summed over
  ranks; ``T`` the temperature of a method with one, ``bbh.methods.temperature``);
  ``logs`` maps names to detached scalar tensors (no host sync per step);
- ``predict_logits(x, num_samples) -> [S, B, C]``: outputs for S draws of the weights (for a
  regression likelihood, C is the output dimension);
- ``predict(x, num_samples)``: the predictive distribution. Classification: probabilities
  ``[B, C]``, the mean of the softmaxes; regression (``likelihood="gaussian"``): a
  ``bbh.likelihoods.RegressionPrediction`` with ``mean``, ``epistemic_std`` and ``std`` ``[B, C]``.

Training, evaluation, attacks and the CLI use only this interface.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import torch
from torch import Tensor, nn

from bbh.inputs import Inputs, batch_size, describe_key, shape_key
from bbh.likelihoods import CategoricalLikelihood, Likelihood, RegressionPrediction
from bbh.validation import (
    InputShapes,
    as_input,
    as_targets,
    check_kl_weight,
    check_num_data,
    check_num_samples,
)

__all__ = ["Method", "check_num_data", "check_num_samples"]


class Method(nn.Module):
    """Base class: subclasses implement ``loss`` and ``predict_logits``.

    Their public entry points start with ``check_batch`` (``loss``) or ``check_input``
    (``predict_logits``): the checks of ``bbh.validation``, with errors naming the argument.
    """

    #: True when predictions vary between weight draws (used for defaults, e.g. 1 pass for MAP).
    stochastic: bool = True
    #: The Adam learning rate ``bbh.training.fit`` uses when none is given.
    default_lr: float = 1e-3
    likelihood: Likelihood
    #: Modules that ``train()`` leaves in eval mode: ``bbh.finetune``'s frozen BatchNorm
    #: layers, whose running statistics stay frozen with their parameters (a plain tuple, so
    #: not registered twice as submodules)
    frozen_in_eval: tuple[nn.Module, ...] = ()

    def train(self, mode: bool = True) -> Method:
        """``nn.Module.train``, with the modules of ``frozen_in_eval`` kept in eval mode.

        Args:
            mode: True for training mode, False for eval mode.

        Returns:
            The method.
        """
        super().train(mode)
        for module in self.frozen_in_eval:
            module.train(False)
        return self

    def loss(
        self, x: Inputs, y: Tensor, *, num_data: int, kl_weight: float | Tensor = 1.0
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The training objective on one minibatch: what ``bbh.training.fit`` minimises.

        For the Bayesian methods it is the negative ELBO per training example:

            loss = mean_b NLL(y_b | x_b, w) + kl_weight * T * KL(q || p) / num_data

        with ``T`` the method's temperature (1 for a method without one,
        ``bbh.methods.temperature``) and the KL in closed form, bounded or estimated from weight
        samples: each method's docstring says which, and over which weight samples the NLL is
        taken. MAP and MC dropout put the negative log prior ``R(w)`` (weight decay) in the KL's
        place; a deep ensemble returns the sum of its members' NLLs and ignores ``kl_weight``.

        Args:
            x: Inputs ``[B, ...]`` on the model's device: a tensor, or a tuple or list (the
                net's positional arguments) or dict (its keyword arguments) of tensors sharing
                B (``bbh.inputs``). Floating tensors are cast to the model's dtype; integer ones
                (token ids) reach the net unchanged.
            y: Targets: integer class ids ``[B]`` in ``[0, C)`` (``likelihood="categorical"``,
                the default), or real targets ``[B]`` or ``[B, C]`` (``likelihood="gaussian"``).
            num_data: The training-set size N (summed over ranks under DDP); dividing the KL by
                it gives one example's share of it. ``fit`` passes ``len(x)``.
            kl_weight: The KL's weight, a finite number ``>= 0`` or a one-element floating
                tensor. 1 gives the ELBO; an annealing schedule (``bbh.training.annealing``)
                ramps it up from 0.

        Returns:
            The pair ``(loss, logs)``. ``loss`` is a scalar tensor to call ``backward()`` on;
            ``logs`` maps names (``"nll"``, ``"kl"``, ``"loss"`` and some method-specific ones)
            to detached scalar tensors, so that logging needs no host sync per step.

        Raises:
            ValueError: ``num_data`` is not a positive int or ``kl_weight`` is negative or not
                finite; an input or target is on another device, has a wrong batch size or
                shape, holds a class id out of range or a NaN or infinite value; or the net
                cannot take the inputs' shape.
            TypeError: ``x`` is not a tensor or a tuple, list or dict of tensors, ``y`` is not a
                tensor, class ids are not integers, or ``kl_weight`` is not a number.

        Example:
            >>> import torch, bbh
            >>> from bbh.nets import MLP
            >>> model = bbh.build("bbh", MLP(4, [16], 3))
            >>> x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
            >>> loss, logs = model.loss(x, y, num_data=1000)
            >>> loss.backward()
            >>> sorted(logs)
            ['kl', 'loss', 'nll']
        """
        raise NotImplementedError

    def predict_logits(self, x: Inputs, num_samples: int = 100) -> Tensor:
        """The network's outputs under ``num_samples`` draws of the weights, ``[S, B, C]``.

        Each draw is one function sample: a weight sample from the posterior, a dropout mask or
        an ensemble member. The softmax over the last dimension, averaged over the first, is the
        predictive distribution (``predict``). Gradients flow to ``x`` and to the parameters
        (``bbh.attacks`` uses them).

        Args:
            x: Inputs ``[B, ...]``: a tensor, or a tuple, list or dict of tensors, as for
                ``loss``.
            num_samples: S, the number of weight draws, an int ``>= 1``. A deterministic method
                (MAP) returns its one output S times; a deep ensemble of M members returns its
                members' outputs, ``[M, B, C]``, whatever S is.

        Returns:
            A tensor ``[S, B, C]`` of class logits, or for ``likelihood="gaussian"`` of the
            predicted means of the C outputs.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1``, or ``x`` fails the checks that
                ``loss`` makes (device, batch, shape, NaN or infinite values).
            TypeError: ``x`` is not a tensor or a tuple, list or dict of tensors.

        Example:
            >>> import torch, bbh
            >>> from bbh.nets import MLP
            >>> model = bbh.build("bbh", MLP(4, [16], 3))
            >>> model.predict_logits(torch.randn(32, 4), num_samples=10).shape
            torch.Size([10, 32, 3])
        """
        raise NotImplementedError

    def optimizer_groups(self, lr: float) -> list[dict[str, Any]]:
        """The optimiser's parameter groups (``bbh.training.fit``): by default one, every
        trainable parameter at ``lr``; a method may give some parameters another rate.

        Args:
            lr: The base learning rate.

        Returns:
            ``torch.optim`` parameter groups, dicts with ``params`` and ``lr`` (and optionally
            ``lr_schedule``).
        """
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]

    def draw_predictive(self, num_samples: int) -> Tensor | None:
        """``num_samples`` posterior draws that ``predict_logits_with`` applies to any batch,
        or None (the default) where the method draws its noise with each batch.

        ``bbh.evaluation.predict_batched`` uses them to predict a whole data set with one set of
        draws: the weights are generated once per draw, not once per draw and batch.

        Args:
            num_samples: S, the number of draws.

        Returns:
            The draws for ``predict_logits_with``, or None.
        """
        return None

    def predict_logits_with(self, draws: Tensor, x: Inputs) -> Tensor:
        """Outputs ``[S, B, C]`` of the draws of ``draw_predictive`` on the batch ``x``.

        Args:
            draws: Draws from ``draw_predictive``.
            x: Inputs ``[B, ...]``, as for ``loss``.

        Returns:
            The outputs ``[S, B, C]``.

        Raises:
            NotImplementedError: The method has no ``draw_predictive``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no draw_predictive")

    @torch.no_grad()
    def predict(self, x: Inputs, num_samples: int = 100) -> Tensor | RegressionPrediction:
        """The predictive distribution over S draws of the weights (one pass for a deterministic
        method: its draws are all the same), without gradients.

        Args:
            x: Inputs ``[B, ...]``: a tensor, or a tuple, list or dict of tensors, as for
                ``loss``.
            num_samples: S, the number of weight draws (``predict_logits``), an int ``>= 1``.

        Returns:
            The predictive distribution, by the likelihood

            - ``likelihood="categorical"``: probabilities ``[B, C]``, the mean over the draws of
              ``softmax(logits)``;
            - ``likelihood="gaussian"``: a ``RegressionPrediction``: ``mean``, ``epistemic_std``
              (over the draws; 0 for MAP) and ``std`` (with the observation noise), each
              ``[B, C]``.

        Raises:
            ValueError: ``num_samples`` is not an int ``>= 1``, or ``x`` fails the checks of
                ``predict_logits``.
            TypeError: ``x`` is not a tensor or a tuple, list or dict of tensors.

        Example:
            >>> import torch, bbh
            >>> from bbh.nets import MLP
            >>> model = bbh.build("bbh", MLP(4, [16], 3))
            >>> probs = model.predict(torch.randn(32, 4), num_samples=10)
            >>> probs.shape
            torch.Size([32, 3])
        """
        check_num_samples(num_samples)
        outputs = self.predict_logits(x, num_samples if self.stochastic else 1)
        return self.likelihood.predictive(outputs)

    def probe_net(self) -> nn.Module:
        """A plain module that runs one input as the method's nets do (for shape checks).

        Returns:
            The module (by default the method's ``net``).

        Raises:
            NotImplementedError: The method has no ``net`` and does not define ``probe_net``.
        """
        net = getattr(self, "net", None)
        if not isinstance(net, nn.Module):
            raise NotImplementedError(f"{type(self).__name__} must define probe_net()")
        return net

    def check_input(self, x: Any, name: str = "x") -> Any:
        """``x`` checked as inputs ``[B, ...]`` on the model's device: a tensor, or a tuple,
        list or dict of tensors (``bbh.inputs``; a tuple goes to the net as positional
        arguments, a dict as keyword arguments).

        Casts floating tensors to the model's dtype and converts numpy; integer and boolean
        tensors (token ids, masks) go to the net unchanged. Errors for another device, tensors
        that disagree on the batch size, a shape the network cannot take (probed once per shape)
        and, unless ``bbh.validation.values_prechecked()``, non-finite floating values.

        Args:
            x: The inputs.
            name: Their name in error messages.

        Returns:
            The inputs, cast and converted.

        Raises:
            ValueError: One of the errors above.
            TypeError: ``x`` is not a tensor or a tuple, list or dict of tensors.
        """
        x = as_input(x, like=self._reference_tensor(), name=name)
        self._input_shapes().check(self.probe_net(), x, name)
        return x

    def check_batch(
        self, x: Any, y: Any, *, num_data: Any, kl_weight: Any
    ) -> tuple[Tensor, Tensor]:
        """The checks of ``loss``: ``num_data``, ``kl_weight``, inputs ``x`` and targets ``y``.

        Args:
            x: The inputs.
            y: The targets.
            num_data: The training-set size.
            kl_weight: The KL's weight.

        Returns:
            ``(x, y)`` checked and converted (``check_input``, ``check_targets``).

        Raises:
            ValueError: A check failed (see ``loss``).
            TypeError: A value has the wrong type (see ``loss``).
        """
        check_num_data(num_data)
        check_kl_weight(kl_weight)
        x = self.check_input(x)
        return x, self.check_targets(y, input_shape=shape_key(x), batch=batch_size(x))

    def check_targets(self, y: Any, *, input_shape: Hashable, batch: int) -> Tensor:
        """Targets for ``batch`` inputs of per-example shape ``input_shape`` (their
        ``bbh.inputs.shape_key``, already checked by ``check_input``). Categorical: integer
        classes ``[B]`` in ``[0, C)``; regression: ``[B]`` or ``[B, C]``. The range is checked
        unless ``values_prechecked()``.

        Args:
            y: The targets.
            input_shape: The inputs' per-example shape key.
            batch: B, the number of inputs.

        Returns:
            The targets as a tensor on the model's device.

        Raises:
            ValueError: The net's outputs for these inputs are not ``[B, C]``, or the targets do not
                fit them.
        """
        out_shape = self._input_shapes().outputs[input_shape]
        if len(out_shape) != 1:
            raise ValueError(
                f"the loss needs network outputs [B, C], but for inputs "
                f"{describe_key(input_shape)} {type(self.probe_net()).__name__} returns "
                f"[B, {', '.join(map(str, out_shape))}]"
            )
        return as_targets(
            y,
            batch=batch,
            num_outputs=out_shape[0],
            categorical=isinstance(self.likelihood, CategoricalLikelihood),
            like=self._reference_tensor(),
        )

    def _reference_tensor(self) -> Tensor:
        """A floating parameter: inputs must match its dtype and device (looked up once; the
        parameter object follows ``.to()``, which converts parameters in place)."""
        cached = self.__dict__.get("_reference_parameter")
        if cached is not None:
            return cached
        for p in self.parameters():
            if p.is_floating_point():
                self.__dict__["_reference_parameter"] = p
                return p
        raise ValueError(f"{type(self).__name__} has no floating parameters")

    def _input_shapes(self) -> InputShapes:
        shapes = self.__dict__.get("_checked_input_shapes")
        if shapes is None:
            shapes = self.__dict__["_checked_input_shapes"] = InputShapes()
        return shapes
