"""The arithmetic of self-attention: infinite-width kernel rules and the finite forward pass.

Multi-head self-attention over the P positions of an example (a sequence, or
an image with its spatial axes taken together), without positional
embeddings; Hron et al. 2020, "Infinite attention: NNGP and NTK for deep
attention networks" (ICML), in the conventions of neural-tangents'
`GlobalSelfAttention` (ntk parameterization). For an input x (P, C) and each
head h of H:

    keys   k = x W_K / sqrt(C),  queries q = x W_Q / sqrt(C)   (d_K columns each)
    logits G = w_q w_k q k^T / d_K        (scaling "linear"; W_Q = W_K, tied)
           G = w_q w_k q k^T / sqrt(d_K)  (scaling "sqrt"; W_Q, W_K independent)
    head   A = phi(G) x W_V / sqrt(C)     (phi: softmax over keys, identity, relu or abs)
    out    f = w_o w_v concat_h(A) W_O / sqrt(H d_V) + b_std b

with every weight N(0, 1). The kernel rules (K, Theta: the input's NNGP and
NTK at all pairs of positions of two examples a, b; K_aa the covariance of
example a with itself):

- linear scaling (Hron et al. 2020, Sec. 3.1 and Eq. (11)): the logits
  converge to w_q w_k K_aa, so the weights Phi_a = phi(w_q w_k K_aa) are
  deterministic, and
      Sigma'[i, k] = w_o^2 w_v^2 (Phi_a K Phi_b^T)[i, k] + b_std^2,
      Theta'       = w_o^2 w_v^2 Phi_a (Theta + 2 K) Phi_b^T + b_std^2
  (the value and output weights each add one w_o^2 w_v^2 Phi K Phi^T; the
  gradients through the logits vanish);
- sqrt scaling, identity phi (Hron et al. 2020, Sec. 3.2): the logits stay
  Gaussian, and with S = sum_{j,l} K[j, l]^2 and T = sum_{j,l} K[j, l] Theta[j, l]
      Sigma' = w_q^2 w_k^2 w_o^2 w_v^2 S K + b_std^2,
      Theta' = w_q^2 w_k^2 w_o^2 w_v^2 (2 T K + S (Theta + 4 K)) + b_std^2
  (queries, keys, values and outputs each add one S K).
Softmax, relu and abs of logits that stay Gaussian (sqrt scaling) have no
closed form: `EXACT` lists the combinations that do.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

MECHANISMS = ("softmax", "identity", "relu", "abs")
SCALINGS = ("linear", "sqrt")
EXACT = tuple((m, "linear") for m in MECHANISMS) + (("identity", "sqrt"),)


def exact_text() -> str:
    return ", ".join(f"mechanism={m} scaling={s}" for m, s in EXACT)


def mechanism_fn(mechanism: str):
    """phi on logits (..., P_queries, P_keys); softmax normalises over the keys."""
    return {"softmax": lambda g: jax.nn.softmax(g, axis=-1), "identity": lambda g: g,
            "relu": lambda g: jnp.maximum(g, 0), "abs": jnp.abs}[mechanism]


# -- infinite width ----------------------------------------------------------------

def flat_positions(a, rank: int, lead: int):
    """(lead..., P, P) from a PAIRS array (lead..., *S, *S), P = prod(S)."""
    spatial = a.shape[lead:lead + rank]
    p = math.prod(spatial)
    return a.reshape(a.shape[:lead] + (p, p))


def weights(self_cov, mechanism: str, qk: float):
    """Phi = phi(qk * K_aa): (n, P, P) from the examples' own covariances (n, P, P)."""
    return mechanism_fn(mechanism)(qk * self_cov)


def mix(phi1, a, phi2, diagonal: bool):
    """Phi_1 A Phi_2^T per pair: phi1 (n1, P, P), a (..., n1, n2, P, P),
    phi2 (n2, P, P) -> (..., n1, n2, P, P), or its diagonal (..., n1, n2, P)."""
    hi = jax.lax.Precision.HIGHEST
    t = jnp.einsum("aij,...abjl->...abil", phi1, a, precision=hi)
    if diagonal:
        return jnp.einsum("...abil,bil->...abi", t, phi2, precision=hi)
    return jnp.einsum("...abil,bkl->...abik", t, phi2, precision=hi)


def linear_rule(nngp, ntk, phi1, phi2, ov2: float, b2: float, diagonal: bool):
    """(Sigma', Theta' or None) of linear scaling; nngp, ntk (n1, n2, P, P)."""
    if ntk is None:
        return ov2 * mix(phi1, nngp, phi2, diagonal) + b2, None
    both = mix(phi1, jnp.stack([nngp, ntk + 2 * nngp]), phi2, diagonal)
    return ov2 * both[0] + b2, ov2 * both[1] + b2


def sqrt_identity_rule(nngp, ntk, qkov2: float, b2: float, diagonal: bool):
    """(Sigma', Theta' or None) of sqrt scaling with identity weights; nngp, ntk (n1, n2, P, P)."""
    s = jnp.sum(nngp * nngp, axis=(-2, -1), keepdims=True)
    k = jnp.diagonal(nngp, axis1=-2, axis2=-1) if diagonal else nngp
    sigma = qkov2 * s * k + b2
    if ntk is None:
        return sigma, None
    t = jnp.sum(nngp * ntk, axis=(-2, -1), keepdims=True)
    if diagonal:
        s, t = s[..., 0], t[..., 0]
        ntk = jnp.diagonal(ntk, axis1=-2, axis2=-1)
    return sigma, qkov2 * (2 * t * k + s * (ntk + 4 * k)) + b2


# -- finite width --------------------------------------------------------------------

def init_params(key, heads: int, c_in: int, d_key: int, d_value: int, c_out: int, tied: bool, bias: bool) -> dict:
    """N(0, 1) weights: w_k (H, C, d_K), [w_q likewise unless tied], w_v (H, C, d_V),
    w_o (H d_V, C_out), [b (C_out,)]."""
    kq, kk, kv, ko, kb = jax.random.split(key, 5)
    params = {"w_k": jax.random.normal(kk, (heads, c_in, d_key)),
              "w_v": jax.random.normal(kv, (heads, c_in, d_value)),
              "w_o": jax.random.normal(ko, (heads * d_value, c_out))}
    if not tied:
        params["w_q"] = jax.random.normal(kq, (heads, c_in, d_key))
    if bias:
        params["b"] = jax.random.normal(kb, (c_out,))
    return params


def forward(params: dict, x, mechanism: str, scaling: str, qk: float, ov: float, b_std: float):
    """f(x) of the module docstring; x (n, *S, C) -> (n, *S, C_out)."""
    hi = jax.lax.Precision.HIGHEST
    n, spatial, c = x.shape[0], x.shape[1:-1], x.shape[-1]
    flat = x.reshape(n, -1, c)
    keys = jnp.einsum("npc,hcd->nhpd", flat, params["w_k"], precision=hi)
    queries = keys if "w_q" not in params else jnp.einsum("npc,hcd->nhpd", flat, params["w_q"], precision=hi)
    d_key = keys.shape[-1]
    norm = c * (d_key if scaling == "linear" else math.sqrt(d_key))
    logits = jnp.einsum("nhpd,nhqd->nhpq", queries, keys, precision=hi) * (qk / norm)
    values = jnp.einsum("npc,hcd->nhpd", flat, params["w_v"], precision=hi)
    heads = jnp.einsum("nhpq,nhqd->nphd", mechanism_fn(mechanism)(logits), values, precision=hi)
    heads = heads.reshape(n, heads.shape[1], -1)
    out = jnp.einsum("npk,ko->npo", heads, params["w_o"], precision=hi) * (ov / math.sqrt(heads.shape[-1] * c))
    if "b" in params:
        out = out + b_std * params["b"]
    return out.reshape((n,) + spatial + (out.shape[-1],))
