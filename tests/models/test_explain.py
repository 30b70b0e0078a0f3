"""explain_user: the scoring path's user vector is the model's own, and the attribution is a distribution over the
real history (none on padding), for every model and both layer norms."""
import pytest
import torch

from lakerec.models import build_model
from lakerec.models.base import ModelConfig

INPUTS = torch.tensor([[0, 0, 0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 0, 0, 1, 2], [9, 8, 7, 6, 5, 4, 3, 2]])


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "bsarec"])
@pytest.mark.parametrize("norm_first, text_dim", [(True, 0), (False, 0), (True, 12)])
def test_explain_user_gives_the_user_vector_and_attributes_only_real_items(name, norm_first, text_dim):
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_items=30, max_len=8, dim=16, layers=2, heads=2, name=name,
                                    norm_first=norm_first, text_dim=text_dim)).eval()
    if text_dim:  # text-aware items: the input is the fused item representation, in explain_user too
        model.set_item_text(torch.randn(31, text_dim), id_known=torch.arange(31) % 3 > 0)
    with torch.no_grad():
        expected = model.user_vectors(INPUTS)
        vectors, attribution = model.explain_user(INPUTS)
        short_vectors, _ = model.explain_user(INPUTS[1:2])  # all-padding columns cut: same vector
    assert torch.allclose(vectors, expected, atol=1e-5)
    assert torch.allclose(short_vectors, expected[1:2], atol=1e-5)
    assert attribution.shape == INPUTS.shape and (attribution >= 0).all()
    assert (attribution[INPUTS == 0] == 0).all()
    total = attribution.sum(dim=1)
    seen = INPUTS != 0
    if name != "bert4rec":  # causal: the last position reads the history only
        assert torch.allclose(total, torch.ones(3), atol=1e-5)
    else:  # the appended [MASK] keeps its own share, and the oldest item of a full row drops out
        assert (total < 1).all() and attribution[2, 0] == 0
        seen[2, 0] = False
    assert (attribution[seen] > 0).all()  # every item the model reads draws some attention
