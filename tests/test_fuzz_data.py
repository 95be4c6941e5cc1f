"""Fuzzing the corpus readers (physioser.data) on random file trees, names and label files.

Every registered reader runs on every generated tree. It must return rows, or raise
CorpusLayoutError naming the corpus, the folder and the expected layout. Nothing may be dropped
silently: every audio file under the root is either a row or an Unmatched entry with a reason
(IEMOCAP's whole-dialog recordings under SessionN/dialog/wav/ excepted, as documented).
Names come from each corpus's own naming scheme (near misses included) and from arbitrary
text; label files (IEMOCAP EmoEvaluation, MSP-Podcast labels_consensus.csv, CREMA-D
VideoDemographics.csv) hold arbitrary bytes or near-valid lines.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from physioser.data import CANONICAL, CORPORA, CorpusLayoutError, UnmatchedFilesWarning, list_corpus, read_corpus
from physioser.data.registry import audio_files
from tests.fuzzing import budget, check_rejection, only_warnings

NAME_PATTERNS = [
    r"0[0-9]-0[0-9]-0[0-9]-0[0-9]-0[0-9]-0[0-9]-[0-9][0-9]",  # RAVDESS
    r"10[0-9][0-9]_[A-Z]{3}_(ANG|HAP|SAD|XYZ)_(LO|MD|HI|XX|X)",  # CREMA-D
    r"(OAF|YAF)_[a-z]{1,5}_(angry|ps|sad|bored)",  # TESS
    r"((DC|JE|XX)_)?(sa|su|a|d|f|h|n|q)[0-9][0-9]",  # SAVEE
    r"Ses0[0-6][FM]_[a-z0-9_]{1,8}_[FM][0-9]{3}",  # IEMOCAP
    r"MSP-PODCAST_[0-9]{4}_[0-9]{4}",  # MSP-Podcast
    r"[0-9][0-9][ab][0-9][0-9][WLEAFTNX][a-z]",  # EmoDB
    r"(dis|gio|neu|xxx)-[fm][0-9]-[a-z][0-9]{1,2}",  # EMOVO
    r"[0-9][0-9]-[CDJNPSTX]-([12]-)?[0-7]",  # CaFE
    r"[FM][0-9][0-9][AFHNSWX][0-9][0-9]",  # ShEMO
    r"S[MF][0-9]{1,3}_F[0-9]{1,3}_[AHNSX][0-9]{1,3}",  # URDU
    r"[0-9]{1,3}_[a-z]{2}_[A-Za-z]{1,5}",  # TurEV
    r"[adfhsx][0-9][0-9] ?\([0-9]{1,3}\)[a-z]?",  # AESDD
    r"[0-9]{1,4}",  # CASIA
    r"[MF]_[0-9]{1,2}_[A-Za-z]{1,5}_S_[0-9]{1,2}_[A-Z]{1,8}_[0-9]",  # SUBESCO
    r"[a-z]{3}[0-9]{5}",  # KoreanEmotionTTS
    r"00[0-9][0-9]_00[0-9]{4}",  # ESD
    r"[A-Za-z]{1,7}_[FMCX]_[ABX]_.{1,6}",  # MESD
]
SAFE = st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00")
stems = st.one_of(*[st.from_regex(p, fullmatch=True) for p in NAME_PATTERNS], st.text(SAFE, min_size=1, max_size=30))
folders = st.one_of(
    st.sampled_from(["Actor_01", "Actor_02", "AudioWAV", "wav", "sentences", "dialog", "Session1", "Session3", "Audios", "Labels",
                     "f1", "m3", "OAF_angry", "YAF_sad", "DC", "KL", "F", "M", "A", "H", "N", "S", "an", "a", "plain-to-emotional",
                     "ema", "nek", "0011", "Angry", "neutral", "EmoEvaluation"]),
    st.text(SAFE, min_size=1, max_size=12),
).filter(lambda s: s not in (".", "..") and len(s.encode()) < 200)
extensions = st.sampled_from([".wav", ".flac", ".WAV", ".Flac", ".mp3", ".txt", ""])
audio_entries = st.tuples(st.lists(folders, max_size=4), stems, extensions)

iemocap_line = st.builds(
    lambda a, b, utt, label: f"[{a} - {b}]\t{utt}\t{label}\t[2.5, 3.0, 2.0]",
    st.from_regex(r"[0-9.]{1,6}", fullmatch=True), st.from_regex(r"[0-9.]{1,6}", fullmatch=True),
    st.from_regex(r"Ses0[1-5][FM]_[a-z0-9_]{1,8}_[FM][0-9]{3}", fullmatch=True), st.sampled_from(["neu", "hap", "ang", "xxx", "zzz"]))
msp_csv = st.builds(
    lambda header, rows: "\n".join([header] + rows),
    st.sampled_from(["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set", "FileName,EmoClass", "Name,Class", ""]),
    st.lists(st.builds(lambda f, c, s, g, p: f"{f}.wav,{c},3,3,3,{s},{g},{p}",
                       st.from_regex(r"MSP-PODCAST_[0-9]{4}_[0-9]{4}", fullmatch=True), st.sampled_from(["N", "H", "Q", ""]),
                       st.sampled_from(["12", "", "Unknown"]), st.sampled_from(["Male", "female", "x", ""]),
                       st.sampled_from(["Train", "Test1", ""])) | st.text(SAFE, max_size=40), max_size=5))
label_files = st.fixed_dictionaries({}, optional={
    "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt": st.lists(iemocap_line | st.text(max_size=40), max_size=6).map("\n".join).map(str.encode) | st.binary(max_size=200),
    "Labels/labels_consensus.csv": msp_csv.map(str.encode) | st.binary(max_size=200),
    "VideoDemographics.csv": st.sampled_from([b"ActorID,Age,Sex\n1001,30,Male\n", b"ActorID\n1001\n", b"\xff\xfe\x00bad", b""]) | st.binary(max_size=100),
})


def _build(root: Path, entries, labels) -> None:
    for parts, stem, ext in entries:
        folder = root.joinpath(*parts)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{stem}{ext}").write_bytes(b"")
        except (OSError, ValueError):  # a name the file system refuses (too long, or a file where a folder is)
            continue
    for rel, content in labels.items():
        path = root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        except OSError:
            continue


@settings(max_examples=budget(120), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=st.lists(audio_entries, max_size=12), labels=label_files)
@example(entries=[(["Labels"], "MSP-PODCAST_0001_0001", ".wav")],
         labels={"Labels/labels_consensus.csv": b"FileName,EmoClass\nMSP-PODCAST_0001_0001.wav\n"})  # a short CSV row
@example(entries=[], labels={"Labels/labels_consensus.csv": b"Name,Class\nx.wav,N\n"})  # no FileName column
@example(entries=[(["AudioWAV"], "1001_DFA_ANG_XX", ".wav")], labels={"VideoDemographics.csv": b"\xff\xfe\x00bad"})
@example(entries=[(["Session1", "dialog", "EmoEvaluation"], "x", ".wav")],
         labels={"Session1/dialog/EmoEvaluation/Ses01F_impro01.txt": b"\xff\xfe[1 - 2]\tSes01F_impro01_F000\tneu\t["})
def test_fuzz_corpus_readers(entries, labels):
    root = Path(tempfile.mkdtemp(prefix="physioser-fuzz-data-"))
    try:
        _build(root, entries, labels)
        audio = set(audio_files(root))
        for name in CORPORA:
            with only_warnings(UnmatchedFilesWarning):
                try:
                    listing = list_corpus(name, root)
                except CorpusLayoutError as exc:
                    check_rejection(exc, (CorpusLayoutError,), name, str(root))
                    continue
                rows = read_corpus(name, root)
            assert rows == listing.rows and rows
            placed = {r.path for r in listing.rows} | {u.path for u in listing.unmatched}
            missing = {p for p in audio - placed
                       if not (name == "IEMOCAP" and p.parent.name == "wav" and p.parent.parent.name == "dialog")}
            assert not missing, f"{name}: files neither read nor reported: {sorted(missing)[:3]}"
            for r in rows:
                assert r.canonical in CANONICAL and r.corpus == name and r.path.is_file() and root in r.path.parents
                assert isinstance(r.speaker, str) and r.speaker
            assert all(u.reason for u in listing.unmatched)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_msp_label_file_without_the_expected_columns_is_a_layout_error(tmp_path):
    """Finding: a labels_consensus.csv without FileName/EmoClass (or with short rows) crashed the
    MSP-Podcast reader with KeyError/AttributeError instead of naming the file and the layout."""
    (tmp_path / "Labels").mkdir()
    (tmp_path / "Audios").mkdir()
    (tmp_path / "Audios" / "MSP-PODCAST_0001_0001.wav").write_bytes(b"")
    (tmp_path / "Labels" / "labels_consensus.csv").write_text("Name,Class\nMSP-PODCAST_0001_0001.wav,N\n")
    try:
        list_corpus("MSP-Podcast", tmp_path)
    except CorpusLayoutError as exc:
        assert "labels_consensus.csv has no column(s) ['FileName', 'EmoClass']" in str(exc)
    else:
        raise AssertionError("a label file without its columns was accepted")
    (tmp_path / "Labels" / "labels_consensus.csv").write_text("FileName,EmoClass\nMSP-PODCAST_0001_0001.wav\n")
    try:
        listing = list_corpus("MSP-Podcast", tmp_path)
    except CorpusLayoutError as exc:  # the short row gives no label, so the corpus has no rows
        assert "yields no rows" in str(exc)
    else:
        assert all(r.label for r in listing.rows)


def test_msp_files_with_the_same_stem_are_both_reported(tmp_path):
    """Finding: two audio files with one stem (a.wav and a.flac, or in two folders) collapsed into
    one dict entry: the other file vanished without a word."""
    (tmp_path / "Labels").mkdir()
    for sub in ("Audios", "Audios2"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "MSP-PODCAST_0001_0001.wav").write_bytes(b"")
    (tmp_path / "Labels" / "labels_consensus.csv").write_text("FileName,EmoClass\nMSP-PODCAST_0001_0001.wav,N\n")
    listing = list_corpus("MSP-Podcast", tmp_path)
    assert len(listing.rows) == 1 and len(listing.unmatched) == 1 and "same name" in listing.unmatched[0].reason


def test_crema_demographics_that_are_not_text_are_a_layout_error(tmp_path):
    """Finding: a VideoDemographics.csv that is not UTF-8 raised a bare UnicodeDecodeError."""
    (tmp_path / "AudioWAV").mkdir()
    (tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav").write_bytes(b"")
    (tmp_path / "VideoDemographics.csv").write_bytes(b"\xff\xfe\x00bad")
    try:
        list_corpus("CREMA-D", tmp_path / "AudioWAV")
    except CorpusLayoutError as exc:
        assert "VideoDemographics.csv is not UTF-8 text" in str(exc)
    else:
        raise AssertionError("a corrupt demographics file was ignored")
