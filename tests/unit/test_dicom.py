"""DICOM decoding and tags, without models, on small hand-made datasets (every pydicom test file through
the decoders: tests/integration/test_dicom_files.py)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

from imgrag.indexing import dicom  # noqa: E402
from imgrag.indexing.errors import ImgragError  # noqa: E402
from imgrag.indexing.loader import discover, load_file  # noqa: E402

MAX_PIXELS = 80_000_000


def _dataset(pixels: np.ndarray, **tags: Any) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CT"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for k, v in tags.items():
        setattr(ds, k, v)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def _grey(ds: Dataset, frame: int = 0) -> np.ndarray:
    from pydicom.pixels import pixel_array

    return dicom.render_frame(pixel_array(ds, index=frame) if int(ds.get("NumberOfFrames") or 1) > 1 else pixel_array(ds), ds, frame)[..., 0]


def test_window_from_the_file_after_the_rescale() -> None:
    # stored 0..2000 with intercept -1024 → HU -1024..976; a brain window 40/80 maps [0, 80] HU onto 0..255
    px = np.array([[1024, 1064, 1104, 0]], np.uint16)  # 0, 40, 80, -1024 HU
    g = _grey(_dataset(px, RescaleIntercept=-1024, RescaleSlope=1, WindowCenter=40, WindowWidth=80))
    assert g[0, 0] < 5 and 120 <= g[0, 1] <= 135 and g[0, 2] > 250 and g[0, 3] == 0


def test_monochrome1_is_inverted_and_sigmoid_voi_applies() -> None:
    px = np.array([[0, 2048, 4095]], np.uint16)
    plain = _grey(_dataset(px, WindowCenter=2048, WindowWidth=4096))
    inv = _grey(_dataset(px, WindowCenter=2048, WindowWidth=4096, PhotometricInterpretation="MONOCHROME1"))
    assert plain[0, 0] < plain[0, 2] and inv[0, 0] > inv[0, 2]
    sig = _grey(_dataset(px, WindowCenter=2048, WindowWidth=4096, VOILUTFunction="SIGMOID"))
    assert sig[0, 0] < 40 and 120 <= sig[0, 1] <= 135 and sig[0, 2] > 215


def test_percentile_window_ignores_padding_and_outliers() -> None:
    rng = np.random.default_rng(0)
    px = rng.integers(1000, 1100, (64, 64)).astype(np.uint16)
    px[:8] = 0  # padding outside the field of view
    px[10, 10] = 4095  # one hot pixel must not squash the contrast
    g = _grey(_dataset(px, PixelPaddingValue=0))
    body = g[8:].astype(float)
    assert body.std() > 50 and g[0, 0] == 0


def test_voi_lut_sequence() -> None:
    px = np.array([[0, 2, 3]], np.uint16)
    ds = _dataset(px)
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 8]
    lut.add_new(0x00283006, "US", [0, 10, 200, 255])
    ds.VOILUTSequence = [lut]
    g = _grey(ds)
    assert g[0, 0] == 0 and 195 <= g[0, 1] <= 205 and g[0, 2] == 255


def test_enhanced_multiframe_pages_use_the_per_frame_window(tmp_path: Path) -> None:
    frames = np.stack([np.full((8, 8), 100), np.full((8, 8), 300)]).astype(np.uint16)
    ds = _dataset(frames, NumberOfFrames=2)
    shared, voi = Dataset(), Dataset()
    voi.WindowCenter, voi.WindowWidth = 200, 200  # 100 → 0, 300 → 255
    shared.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    path = tmp_path / "multi"  # no extension: found by the DICM marker
    ds.save_as(path, enforce_file_format=True)
    (tmp_path / "DICOMDIR").write_bytes(path.read_bytes())  # the index file of a DICOM folder is not an image
    (tmp_path / "notes").write_text("not dicom")
    found, problems = discover([tmp_path])
    assert found == [path.resolve()] and problems == []
    pages = list(load_file(path, max_pixels=MAX_PIXELS, pdf_dpi=150))
    assert [p.page for p in pages] == [1, 2] and pages[0].image_id.endswith("-p1")
    assert pages[0].image.max() <= 1 and pages[1].image.min() >= 254
    assert [p.page for p in load_file(path, max_pixels=MAX_PIXELS, pdf_dpi=150, only_page=2)] == [2]


def test_tags_become_metadata_caption_dates_and_personal_data() -> None:
    ds = _dataset(np.zeros((4, 4)), Modality="MR", BodyPartExamined="KNEE", ImageLaterality="L",
                  StudyDescription="MR KNEE LEFT", SeriesDescription="SAG PD FS", StudyDate="20210304",
                  AccessionNumber="ACC-77", StudyInstanceUID="1.2.3.4", InstitutionName="Riverside\x07 General",
                  Manufacturer="SIEMENS", PatientName="DOE^JANE", PatientID="P123", PatientBirthDate="19700101")
    info = dicom.file_info(ds)
    assert info.meta["modality"] == "MR" and info.meta["body_part"] == "KNEE" and info.meta["accession"] == "ACC-77"
    assert info.meta["institution"] == "Riverside General" and info.meta["study_date"] == "2021-03-04"
    assert [d.date.isoformat() for d in info.dates] == ["2021-03-04"]
    assert [(f.kind, f.text, f.field, f.line, f.bbox) for f in info.pii] == [
        ("person_name", "DOE JANE", "PatientName", None, None), ("patient_id", "P123", "PatientID", None, None),
        ("birth_date", "19700101", "PatientBirthDate", None, None)]
    blob = " ".join([info.caption, *info.meta.values()])
    assert "DOE" not in blob and "P123" not in blob and "19700101" not in blob
    assert "MRI" in info.caption and "left knee" in info.caption and "sagittal" in info.caption
    assert "膝关节" in info.caption and "磁共振" in info.caption and info.quality == "photo"
    assert "左膝关节磁共振" in info.caption  # the exam name run together, as it is written in Chinese


def test_no_pixel_data_and_missing_decoder_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydicom.data import get_testdata_file

    with pytest.raises(ImgragError, match="without pixel data .*Basic Text SR"):
        list(load_file(Path(get_testdata_file("reportsi.dcm")), max_pixels=MAX_PIXELS, pdf_dpi=150))

    class Unavailable:
        is_available = False

    import pydicom.pixels.decoders.base as base

    monkeypatch.setattr(base, "get_decoder", lambda uid: Unavailable())
    monkeypatch.setattr("pydicom.pixels.pixel_array", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no plugins")))
    jls = Path(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))
    with pytest.raises(ImgragError) as e:
        list(load_file(jls, max_pixels=MAX_PIXELS, pdf_dpi=150))
    assert "no installed decoder for JPEG-LS Lossless" in str(e.value) and "pip install pylibjpeg pylibjpeg-libjpeg" in str(e.value)


def test_not_dicom_and_too_big(tmp_path: Path) -> None:
    bad = tmp_path / "x.dcm"
    bad.write_bytes(os.urandom(300))
    with pytest.raises(ImgragError, match="not a DICOM file|damaged DICOM"):
        list(load_file(bad, max_pixels=MAX_PIXELS, pdf_dpi=150))
    big = tmp_path / "big.dcm"
    _dataset(np.zeros((40, 50))).save_as(big, enforce_file_format=True)
    with pytest.raises(ImgragError, match="over the"):
        list(load_file(big, max_pixels=1000, pdf_dpi=150))


def _jpeg_frames(tmp_path: Path, frames: list[bytes]) -> Path:
    """An 8-bit JPEG Baseline multi-frame file with the given codestreams as its frames."""
    from pydicom.encaps import encapsulate

    ds = _dataset(np.zeros((32, 48)), NumberOfFrames=len(frames), BitsAllocated=8, BitsStored=8, HighBit=7)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    p = tmp_path / "multi.dcm"
    ds.save_as(p, enforce_file_format=True)
    return p


def test_frames_that_fail_for_one_reason_are_one_error(tmp_path: Path) -> None:
    """Frames 2-4 of 6 damaged: 3 pages indexed and one error for 2-4; a header claiming more
    frames than the pixel data holds: the frames it holds, one error for the rest."""
    import io

    from PIL import Image

    from imgrag.indexing.loader import BadFileError, iter_pages

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 48), 128, np.uint8)).save(buf, "JPEG")
    ok, broken = buf.getvalue(), b"\xff\xd8\xff\xdb" + bytes(64)
    out = list(iter_pages(_jpeg_frames(tmp_path, [ok, broken, broken, broken, ok, ok]), max_pixels=MAX_PIXELS, pdf_dpi=150))
    pages = [o.page for o in out if not isinstance(o, BadFileError)]
    errors = [o for o in out if isinstance(o, BadFileError)]
    assert pages == [1, 5, 6] and len(errors) == 1
    assert errors[0].page == 2 and errors[0].reason.startswith("frames 2-4: JPEG Baseline") and "\n" not in str(errors[0])

    lying = tmp_path / "lying.dcm"
    _dataset(np.arange(2 * 16 * 20).reshape(2, 16, 20) % 4096, NumberOfFrames=500).save_as(lying, enforce_file_format=True)
    out = list(iter_pages(lying, max_pixels=MAX_PIXELS, pdf_dpi=150))
    assert [o.page for o in out if not isinstance(o, BadFileError)] == [1, 2]
    (err,) = [o for o in out if isinstance(o, BadFileError)]
    assert err.page == 3 and "frames 3-500: the pixel data holds 2 of the 500 frames the header declares" in str(err)
    # a frame count no file could hold is refused from the header, in one line
    huge = tmp_path / "huge.dcm"
    _dataset(np.zeros((16, 20)), NumberOfFrames=10**9).save_as(huge, enforce_file_format=True)
    with pytest.raises(ImgragError, match=r"1000000000 pages is over the limit of 1000"):
        list(iter_pages(huge, max_pixels=MAX_PIXELS, pdf_dpi=150))


def test_content_decides_and_gdcm_is_never_asked_first(tmp_path: Path) -> None:
    """A PNG named .dcm is read as the PNG it is; an extensionless file with the DICM marker is DICOM;
    gdcm (whose OpenJPEG prints to the terminal) is off every transfer syntax another plugin decodes."""
    from PIL import Image

    png = tmp_path / "photo.dcm"
    Image.new("RGB", (40, 30), "white").save(png, "PNG")
    (page,) = list(load_file(png, max_pixels=MAX_PIXELS, pdf_dpi=150))
    assert page.format == "png" and page.info is None
    raw = tmp_path / "IM0001"
    _dataset(np.zeros((16, 20))).save_as(raw, enforce_file_format=True)
    assert discover([tmp_path])[0] == sorted([png.resolve(), raw.resolve()])
    (page,) = list(load_file(raw, max_pixels=MAX_PIXELS, pdf_dpi=150))
    assert page.format == "dicom"
    from pydicom.pixels.decoders.base import _PIXEL_DATA_DECODERS

    for decoder, *_ in _PIXEL_DATA_DECODERS.values():
        plugins = decoder.available_plugins
        assert "gdcm" not in plugins or plugins == ("gdcm",), (decoder.UID, plugins)
