"""Figures of an explanation, its fidelity and its certificate show the result's own numbers."""

import mi_margin as mm


def certified_network():
    task = mm.ModularAddition(p=7)
    expl = mm.explain(mm.theory.certificate(task), task)
    return expl


def test_explanation_figure_counts_every_neuron_and_its_kept_share():
    expl = certified_network()
    fig = expl.plot()
    bars, kept = fig.data
    assert dict(zip(bars.x, bars.y)) == {**{str(k): v for k, v in expl.counts.items()
                                            if k is not None}, "none": expl.counts.get(None, 0)}
    assert sum(bars.y) == len(expl.label)
    assert list(kept.y) == sorted(expl.kept.tolist(), reverse=True)


def test_fidelity_and_certificate_figures_plot_their_rows():
    expl = certified_network()
    fid = mm.analysis.fidelity(expl, draws=1)
    bar = fid.plot().data[0]
    table = fid.to_dataframe()
    assert list(bar.x) == table["measure"].tolist() and list(bar.y) == table["loss"].tolist()
    cert = mm.analysis.certify(expl, "harmonic")
    hist = cert.plot().data[0]
    assert list(hist.x) == cert.margin_bound.tolist()
    assert f"{cert.certified_accuracy:.4f}" in cert.plot().layout.title.text
