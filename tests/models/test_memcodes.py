import torch

from nwt.models.memcodes import Memcodes


def test_eval_forward_equals_decode_indices():
    torch.manual_seed(0)
    mc = Memcodes(dim=32, num_codes=16, heads=2, temperature=1.0, logit_scale=10.0).eval()
    x = torch.randn(3, 20, 32)
    out, idx = mc(x)
    assert out.shape == (3, 20, 32) and idx.shape == (3, 20, 2) and idx.dtype == torch.long
    assert torch.equal(mc.decode_indices(idx), out)
    assert int(idx.max()) < 16


def test_training_is_straight_through_and_counts_usage():
    torch.manual_seed(0)
    mc = Memcodes(dim=32, num_codes=16, heads=2, temperature=1.0, logit_scale=10.0).train()
    x = torch.randn(2, 50, 32, requires_grad=True)
    out, idx = mc(x)
    # forward is a hard choice: the output equals the decoded indices (up to float rounding)
    assert torch.allclose(out, mc.decode_indices(idx), atol=1e-5)
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # soft gradient reaches the encoder
    assert mc.codes.grad.abs().sum() > 0 and mc.k_weight.grad.abs().sum() > 0
    assert mc.code_usage.sum() == 2 * 50 * 2  # one argmax per position and head


def test_usage_stats():
    counts = torch.tensor([[5.0, 5.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    u = Memcodes.usage_from_counts(counts)
    assert abs(u["perplexity"][0] - 2.0) < 1e-5 and abs(u["perplexity"][1] - 4.0) < 1e-5
    assert u["used_fraction"] == [0.5, 1.0]


def test_restart_dead_codes_from_queries():
    torch.manual_seed(0)
    mc = Memcodes(dim=16, num_codes=8, heads=2, temperature=1.0, logit_scale=10.0).train()
    x = torch.randn(4, 30, 16)
    mc(x)
    mc.code_usage.zero_()
    mc.code_usage[:, 0] = 100.0  # only code 0 in use: 1..7 are dead
    before = mc.codes.detach().clone()
    dead = mc.restart_dead_codes(min_usage_fraction=0.03, generator=torch.Generator().manual_seed(0))
    assert dead[:, 1:].all() and not dead[:, 0].any()
    assert torch.equal(mc.codes[:, 0], before[:, 0]) and not torch.equal(mc.codes[:, 1:], before[:, 1:])
    assert mc.code_usage.sum() == 0
    # restarted codes split the live codes that recent queries pick: here all copy code 0
    gap = (mc.codes[:, 1:] - before[:, :1]).norm(dim=-1)  # (h, 7)
    assert (gap < 0.1 * before.std() * before.shape[-1] ** 0.5).all() and (gap > 0).all()
