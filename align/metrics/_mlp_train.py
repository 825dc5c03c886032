"""Training of the hidden layer of ``mlp_predictivity``: pure JAX, fixed shapes, masks for rows.

One training set is ``Z [m, r]`` inputs (a fold's principal-component coordinates) and ``R [m, q]`` targets (what the
ridge part of the probe leaves of the standardised targets: the network fits the nonlinear residual), with 0/1 row
masks for the rows that train and the rows that validate, and a 0/1 column mask (constant target columns carry no
loss). The network is ``gelu(Z W1 / sqrt(fan_in) + b1) * hidden_mask · W2 + b2`` (flax.linen ``Dense`` layers; the
inputs have unit variance per coordinate on average and ``W1 ~ N(0, 1)``, so pre-activations have unit variance;
``W2 = 0``, so at epoch 0 the network adds nothing and the probe is its ridge part). Hidden units past a
configuration's width are masked, so every configuration of a grid has the shape of the widest one and the grid is
one ``vmap``; all configurations start from the same initialisation. Training is full batch: one epoch = one optax
``adamw`` step on the mean squared error over the training rows and valid target columns (weight decay on the
kernels only).

- :func:`select_config`: every configuration trained for up to ``max_epochs`` epochs on the rows that train and
  evaluated, before training and after each epoch, on the rows that validate; a configuration stops ``patience``
  epochs after its last improvement (by more than a relative ``MIN_DELTA``). Returns each configuration's best
  validation loss and the epoch count that reached it (0: no epoch beat ridge alone).
- :func:`fit_predict`: one configuration trained for a given number of epochs, predicting new inputs.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

#: A validation loss counts as an improvement when below ``best * (1 - MIN_DELTA)``: float noise never resets the
#: patience counter or moves the stopping epoch.
MIN_DELTA = 1e-4


class HiddenLayerMLP(nn.Module):
    """``gelu(z W1 / sqrt(fan_in) + b1) * hidden_mask · W2 + b2``; ``hidden`` is the widest width of the grid."""

    hidden: int
    out: int

    @nn.compact
    def __call__(self, z, hidden_mask, fan_in):
        h = nn.Dense(self.hidden, kernel_init=nn.initializers.normal(1.0),
                     precision=lax.Precision.HIGHEST)(z * lax.rsqrt(fan_in))
        h = nn.gelu(h) * hidden_mask
        return nn.Dense(self.out, kernel_init=nn.initializers.zeros, precision=lax.Precision.HIGHEST)(h)


def _kernels_only(params):
    """adamw's decay mask: decay the kernels, not the biases."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def _optimizer(learning_rate, weight_decay):
    return optax.adamw(learning_rate, weight_decay=weight_decay, mask=_kernels_only)


def _setup(Z, q: int, hidden: int, key):
    model = HiddenLayerMLP(hidden=hidden, out=q)
    return model, model.init(key, Z[:1], jnp.ones((hidden,), Z.dtype), jnp.float32(1.0))


def _loss(model, params, Z, R, row_w, col_w, hidden_mask, fan_in):
    """Mean squared error over the rows with ``row_w`` 1 and the columns with ``col_w`` 1."""
    err = (model.apply(params, Z, hidden_mask, fan_in) - R) * row_w[:, None] * col_w[None, :]
    return jnp.sum(err * err) / (jnp.maximum(jnp.sum(row_w), 1.0) * jnp.maximum(jnp.sum(col_w), 1.0))


def _step(model, params, opt_state, Z, R, train_w, col_w, hidden_mask, fan_in, opt):
    grads = jax.grad(lambda p: _loss(model, p, Z, R, train_w, col_w, hidden_mask, fan_in))(params)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes a float and the int32 count
        updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _bcast(mask, a):
    return mask.reshape(mask.shape + (1,) * (a.ndim - 1))


def select_config(Z, R, train_w, val_w, col_w, fan_in, hidden_masks, weight_decays, key, learning_rate, *,
                  max_epochs: int, patience: int):
    """Best validation loss ``[C]`` and the epoch count ``[C]`` (0..max_epochs) that reached it, per configuration.

    Args:
      Z: ``[m, r]`` inputs; R: ``[m, q]`` residual targets (standardised units).
      train_w, val_w: ``[m]`` 0/1 masks of the rows that train and the rows that validate.
      col_w: ``[q]`` 0/1 mask of the target columns that count.
      fan_in: number of input coordinates that vary (traced scalar).
      hidden_masks: ``[C, H]`` 0/1 hidden units of each configuration; weight_decays: ``[C]``.
      key: PRNG key of the initialisation (the same for every configuration).
      learning_rate: adam step size (traced).
      max_epochs, patience: static epoch limits.
    """
    model, params0 = _setup(Z, R.shape[1], hidden_masks.shape[1], key)
    n_conf = hidden_masks.shape[0]
    params = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n_conf,) + a.shape), params0)
    opt_state = jax.vmap(lambda p: _optimizer(learning_rate, 0.0).init(p))(params)

    def step(params, opt_state, hm, wd):
        params, opt_state = _step(model, params, opt_state, Z, R, train_w, col_w, hm, fan_in,
                                  _optimizer(learning_rate, wd))
        return params, opt_state, _loss(model, params, Z, R, val_w, col_w, hm, fan_in)

    def cond(carry):
        epoch, _, _, _, _, since = carry
        return (epoch < max_epochs) & jnp.any(since < patience)

    def body(carry):
        epoch, params, opt_state, best, best_epoch, since = carry
        new_params, new_state, val = jax.vmap(step)(params, opt_state, hidden_masks, weight_decays)
        active = since < patience  # stopped configurations keep their state
        params = jax.tree_util.tree_map(lambda a, b: jnp.where(_bcast(active, a), a, b), new_params, params)
        opt_state = jax.tree_util.tree_map(lambda a, b: jnp.where(_bcast(active, a), a, b), new_state, opt_state)
        better = active & (val < best * (1.0 - MIN_DELTA))
        best = jnp.where(better, val, best)
        best_epoch = jnp.where(better, epoch + 1, best_epoch)
        since = jnp.where(better, 0, jnp.where(active, since + 1, since))
        return epoch + 1, params, opt_state, best, best_epoch, since

    loss0 = _loss(model, params0, Z, R, val_w, col_w, hidden_masks[0], fan_in)  # W2 = 0: the same for all
    zero = jnp.zeros((n_conf,), jnp.int32)
    carry = (jnp.int32(0), params, opt_state, jnp.full((n_conf,), loss0, Z.dtype), zero, zero)
    _, _, _, best, best_epoch, _ = lax.while_loop(cond, body, carry)
    return best, best_epoch


def fit_predict(Z, R, train_w, col_w, fan_in, hidden_mask, weight_decay, key, learning_rate, epochs, Z_new, *,
                max_epochs: int):
    """Train one configuration for ``epochs`` (traced, at most ``max_epochs``; 0 leaves the network at zero) epochs
    on the rows with ``train_w`` 1 and predict ``Z_new [k, r]`` -> ``[k, q]`` residuals (standardised units)."""
    model, params = _setup(Z, R.shape[1], hidden_mask.shape[0], key)
    opt = _optimizer(learning_rate, weight_decay)

    def body(i, carry):
        return _step(model, *carry, Z, R, train_w, col_w, hidden_mask, fan_in, opt)

    params, _ = lax.fori_loop(0, jnp.minimum(epochs, max_epochs), body, (params, opt.init(params)))
    return model.apply(params, Z_new, hidden_mask, fan_in)
