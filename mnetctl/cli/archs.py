"""`mnetctl archs`: the MobileNet family this tool builds."""

from __future__ import annotations

from ._app import JsonFlag, WideFlag, app, console, print_json
from ._table import Col, print_table


@app.command()
def archs(as_json: JsonFlag = False, wide: WideFlag = False) -> None:
    """List architectures, their usual widths/resolutions and which widths have shipped pretrained weights."""
    from ..specs import FAMILIES, decode
    from ..weights.registry import PRETRAINED

    rows = []
    for fam in FAMILIES.values():
        cfg = decode(fam.name, fam.default_width, fam.default_resolution, 1000)
        macs, params = cfg.count_macs_params()
        rows.append({
            "arch": fam.name,
            "title": fam.title,
            "paper": fam.paper,
            "widths": list(fam.widths),
            "resolutions": list(fam.resolutions),
            "default_resolution": fam.default_resolution,
            "blocks": len(cfg.blocks),
            "macs_at_default": macs,
            "params_at_default": params,
            "pretrained": [
                {"width": c.width, "trained_resolution": c.trained_resolution, "files": list(c.files), "license": c.license}
                for c in PRETRAINED if c.arch == fam.name
            ],
            "note": fam.note,
        })
    from ..heads.ssd import SSD_FAMILIES, decode_ssd
    from ..weights.registry import DETECTORS

    for det in SSD_FAMILIES.values():  # detectors: an SSD head on a backbone above
        cfg = decode_ssd(det.name)
        macs, params = cfg.count_macs_params()
        rows.append({
            "arch": det.name, "title": det.title, "paper": det.paper, "task": "detection", "backbone": det.backbone,
            "widths": [det.default_width], "resolutions": [det.default_resolution],
            "default_resolution": det.default_resolution, "blocks": len(cfg.backbone.blocks),
            "anchors": cfg.num_anchors, "macs_at_default": macs, "params_at_default": params,
            "pretrained": [{"width": c.width, "trained_resolution": c.trained_resolution, "files": [c.file], "license": c.license}
                           for c in DETECTORS if c.arch == det.name],
        })
    from ..heads import deeplab
    from ..weights.registry import SEGMENTATION

    macs, params = deeplab.decode_deeplab().count_macs_params()
    rows.append({
        "arch": deeplab.ARCH, "title": deeplab.TITLE, "paper": deeplab.PAPER, "widths": list(deeplab.WIDTHS),
        "resolutions": list(deeplab.RESOLUTIONS), "default_resolution": deeplab.DEFAULT_RESOLUTION,
        "blocks": len(deeplab.decode_deeplab().blocks),
        "macs_at_default": macs, "params_at_default": params, "task": "segmentation",
        "pretrained": [{"width": c.width, "trained_resolution": c.trained_resolution, "output_stride": c.output_stride,
                        "files": list(c.files), "license": c.license} for c in SEGMENTATION],
    })
    if as_json:
        print_json({"archs": rows})
        return
    cols = [Col("arch", "words"), Col("paper", "words", drop=4), Col("widths", "words", drop=2),
            Col("resolutions", "words", drop=3), Col("blocks", drop=5), Col("MACs / params (default width, res)", justify="left", drop=1),
            Col("pretrained widths (trained res)", "words")]
    cells = []
    for r in rows:
        pre = ", ".join(f"{p['width']:g} ({p['trained_resolution']})" for p in r["pretrained"]) or "none (random weights)"
        cells.append([
            r["arch"], r["paper"], ", ".join(f"{w:g}" for w in r["widths"]), ", ".join(map(str, r["resolutions"])),
            str(r["blocks"]), f"{r['macs_at_default'] / 1e6:.1f} M / {r['params_at_default'] / 1e6:.2f} M"
            f" ({r['default_resolution']})", pre,
        ])
    print_table(cols, cells, wide=wide, title="MobileNet family", header_style="bold")
    notes: dict[str, list[str]] = {}
    for r in rows:
        if r.get("note"):
            notes.setdefault(r["note"], []).append(r["arch"])
    for note, names in notes.items():
        console.print(f"[dim]{', '.join(names)}: {note}[/]")
    console.print("[dim]Any width > 0 and resolution >= 32 builds; pretrained weights fit any resolution of their width.[/]")
