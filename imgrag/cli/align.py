"""Image-text alignment: align (train an adapter) and reembed (switch the index to one)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from imgrag.indexing.errors import ImgragError

from .common import app, err, facade, fail, out


def adapter_facade(adapter: Path, *, reembed: bool, quiet: bool = False) -> Any:
    """The application with image embedder ``aligned`` over ``adapter``; with ``reembed``, an existing
    index built with another image space (same features) is re-embedded first."""
    ig = facade().with_adapter(adapter)
    current = ig.store.spaces()
    if reembed and current is not None and current.image != ig.rt.image_embedder.identity:
        if not quiet:
            err.print(f"re-embedding the index for adapter {adapter} (from stored features) …", highlight=False)
        summary = ig.reembed()
        if not quiet:
            err.print(f"re-embedded {summary.images} images · {summary.tiles_from_pixels} tiles from decoded pages"
                      f" · version {summary.version}", highlight=False)
    return ig


@app.command()
def align(
    out_dir: Annotated[Path, typer.Option("--out", help="adapter folder to write")],
    pairs: Annotated[Path | None, typer.Option("--pairs", help='JSONL, one {"image": path, "caption": text or list, "caption_zh": optional text or list} per line')] = None,
    from_index: Annotated[bool, typer.Option("--from-index", help="captions from indexed records, features from the store (no decoding)")] = False,
    caption_field: Annotated[str, typer.Option("--caption-field", help="with --from-index: caption, ocr_text, tags, or a metadata key (meta.KEY; several captions as a|b)")] = "caption",
    epochs: Annotated[int, typer.Option("--epochs", min=1, max=10_000, help="at most this many epochs (early stopping on validation MRR)")] = 120,
    seed: Annotated[int, typer.Option("--seed", help="seeds the split, the initialisation and the sampling")] = 0,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.01, max=0.9, help="share of images held out for validation")] = 0.2,
    text_head: Annotated[str, typer.Option("--text-head", help="linear (default): both heads learn a 256-d space; identity: queries stay in the text model's space and only the image head learns (keeps words unseen in training)")] = "linear",
    distill: Annotated[float, typer.Option("--distill", min=0.0, help="with --text-head identity: weight of a loss keeping each image near its current (label-bridge) vector, so the bridge's ImageNet knowledge is kept; 0 = off")] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics as JSON")] = False,
) -> None:
    """Train image/text projection heads (InfoNCE) on your own captioned images; save an adapter.

    Prints validation Recall@1/5/10 and MRR before (the current image space) and after.
    Use it with `imgrag index --adapter DIR` or IMGRAG_IMAGE_EMBEDDER=aligned IMGRAG_ADAPTER=DIR."""
    from imgrag.indexing.align import TrainConfig, format_metrics, pairs_from_index, pairs_from_jsonl
    from imgrag.indexing.align import align as run_align

    try:
        if text_head not in ("linear", "identity"):
            raise ImgragError(f"unknown --text-head {text_head!r}", "use --text-head linear or --text-head identity")
        if (pairs is None) == (not from_index):
            raise ImgragError("give either --pairs FILE or --from-index", "e.g. imgrag align --pairs pairs.jsonl --out my-adapter")
        rt = facade().rt
        say = (lambda m: None) if as_json else (lambda m: err.print(m, highlight=False))
        if pairs is not None:
            say(f"embedding the images of {pairs} …")
            data = pairs_from_jsonl(pairs.expanduser(), settings=rt.settings)
        else:
            data = pairs_from_index(rt, caption_field)
        say(f"{len(data.keys)} images, {sum(map(len, data.captions))} captions")
        adapter, metrics = run_align(data, rt.text_embedder, out_dir.expanduser(),
                                     cfg=TrainConfig(epochs=epochs, seed=seed, val_fraction=val_fraction,
                                                     text_head=text_head, distill=distill),  # type: ignore[arg-type]
                                     log_fn=say)
    except ImgragError as e:
        fail(e)
    if as_json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2, ensure_ascii=False))
        return
    out.print("\n".join(format_metrics(metrics)), highlight=False)
    out.print(f"saved adapter {adapter.identity} to {out_dir} (best epoch {metrics['best_epoch']}, τ {metrics['tau']:.4f})",
              highlight=False)


@app.command()
def reembed(
    adapter: Annotated[Path, typer.Option("--adapter", help="adapter folder written by `imgrag align`")],
) -> None:
    """Switch the index to another adapter using the stored features (no image is decoded for whole-image vectors)."""
    try:
        summary = adapter_facade(adapter, reembed=False).reembed()
    except ImgragError as e:
        fail(e)
    if summary.version is None:
        out.print(f"already embedded with {summary.new_image_space}")
    else:
        out.print(f"re-embedded {summary.images} images · {summary.tiles_from_pixels} tiles from decoded pages · "
                  f"version {summary.version}")

