"""Feature rules of the other windowed affine layers: conv_transpose and conv_local.

- conv_transpose (neural-tangents' `ConvTranspose`; the conv rule of Arora et
  al. 2019, Eq. (7), on the input dilated by the stride and padded): the
  features are dilated and padded the same way (zeros between positions, a
  zero feature vector has zero inner products, as the dilated covariance
  has), then conv's window map with stride 1 and valid padding: exact patches
  / sqrt(|T|) when |T| d <= m, else a random convolution to m. Unbiased (exact
  in the patch case) given the input features.
- conv_local (Novak et al. 2019, Sec. 3 and the LCN of Sec. 5): the same
  position p' = p reads conv's rule, two positions p != p' have zero
  covariance (weights and biases independent per position). Features: conv's
  affine features F_p (bias column included), then a random projection with
  weights independent per position, F_p G diag(s_p) / sqrt(m), G (D, m)
  standard normal shared, s_p (m,) random signs drawn per output position:
  at p = p' the signs cancel (E <F_p G, F'_p G> / m = F_p.F'_p), at p != p'
  the product s_p s_p' has mean 0, so E = 0, as the kernel. The projection
  is to m even when F has fewer dimensions, so that the cross-position noise
  falls like m^(-1/2) (signs on F itself would leave noise of the size of its
  few bias/patch coordinates). Unbiased given the input features.
"""
from __future__ import annotations

from ..ops.base import DIAG, spatial_axes
from .rules import Feats, affine, window_proj
from .sketches import project


def conv_transpose(op, ins, ctx, fc):
    from ..ops.conv_transpose import dilate_pad
    rank = len(op.window)
    groups = spatial_axes(1, rank, DIAG)
    pads = op._pads()
    before = lambda a: dilate_pad(a, groups, op.strides(), pads)  # noqa: E731
    proj = window_proj(fc, ctx.out_shape.spatial, op.window, (1,) * rank, "valid", before)
    return affine(op, ins[0], ctx, fc, proj)


def local_project(a, draws, name: str, m: int):
    """a (n, *S, D) -> (n, *S, m): (a G) * s / sqrt(m), G (D, m) standard normal,
    s (*S, m) random signs per position: E<out_p, out'_q> = [p = q] a_p.a'_p."""
    if a is None or a.shape[-1] == 0:
        return a
    signs = draws.signs(f"{name}/s", a.shape[1:-1] + (m,))
    return project(a, draws, name, m) * signs


def conv_local(op, ins, ctx, fc):
    conv_feats = affine(op, ins[0], ctx, fc,
                        window_proj(fc, ctx.out_shape.spatial, op.window, op.strides(), op.padding))
    return Feats(local_project(conv_feats.nngp, fc.draws, "L", fc.m),
                 local_project(conv_feats.ntk, fc.draws, "LH", fc.m))

