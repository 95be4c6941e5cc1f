"""Every reader on a small tree the test builds with the corpus's real naming, malformed names included."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from physioser.data import (
    CANONICAL,
    CORPORA,
    FOUR_CLASSES,
    CorpusLayoutError,
    UnmatchedFilesWarning,
    list_corpus,
    read_corpus,
    to_four_class,
)


def write_audio(path: Path, seed: int = 0, seconds: float = 0.15, sr: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).normal(0, 0.1, int(seconds * sr)).astype(np.float32)
    sf.write(path, noise, sr, subtype="PCM_16")


def build(root: Path, files: list[str], texts: dict[str, str] | None = None) -> None:
    for i, rel in enumerate(files):
        write_audio(root / rel, seed=i)
    for rel, text in (texts or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


# corpus -> (valid files {rel: (label, canonical, speaker, gender, sentence, partition)},
#            malformed files {rel: reason substring}, extra text files)
CASES: dict[str, tuple[dict, dict, dict]] = {
    "RAVDESS": (
        {
            "Actor_01/03-01-01-01-01-01-01.wav": ("01", "neutral", "01", "M", "01", None),
            "Actor_02/03-01-08-02-02-02-02.flac": ("08", "surprised", "02", "F", "02", None),
        },
        {
            "Actor_01/03-02-01-01-01-01-01.wav": "song",
            "Actor_01/03-01-05-01-01-01-02.wav": "disagrees with its folder",
            "Actor_01/01-01-01-01-01-01-01.wav": "not audio-only",
            "Actor_03/03-01-09-01-01-01-03.wav": "label code '09'",
            "Actor_03/03-01-01-01-01-01.wav": "does not match RAVDESS naming",
        },
        {},
    ),
    "CREMA-D": (
        {
            "AudioWAV/1001_DFA_ANG_XX.wav": ("ANG", "angry", "1001", "M", "DFA", None),
            "AudioWAV/1002_IEO_HAP_HI.flac": ("HAP", "happy", "1002", "F", "IEO", None),
            "AudioWAV/1091_TSI_SAD_LO.wav": ("SAD", "sad", "1091", None, "TSI", None),
        },
        {
            "AudioWAV/1001_DFA_ANGRY_XX.wav": "does not match",
            "AudioWAV/1001_ABC_ANG_XX.wav": "sentence code 'ABC'",
            "AudioWAV/1001_DFA_XYZ_XX.wav": "label code 'XYZ'",
        },
        {"VideoDemographics.csv": "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Asian,Not Hispanic\n"},
    ),
    "TESS": (
        {
            "TESS Toronto emotional speech set data/OAF_angry/OAF_back_angry.wav": ("angry", "angry", "OAF", "F", "back", None),
            "TESS Toronto emotional speech set data/YAF_pleasant_surprised/YAF_bath_ps.wav": ("ps", "surprised", "YAF", "F", "bath", None),
            "TESS Toronto emotional speech set data/OAF_Fear/OAF_bite_fear.flac": ("fear", "fearful", "OAF", "F", "bite", None),
        },
        {"TESS Toronto emotional speech set data/OAF_angry/OAF_back.wav": "does not match"},
        {},
    ),
    "SAVEE": (
        {
            "AudioData/DC/a01.wav": ("a", "angry", "DC", "M", None, None),
            "AudioData/JK/sa15.wav": ("sa", "sad", "JK", "M", None, None),
            "AudioData/KL/n30.flac": ("n", "neutral", "KL", "M", None, None),
            "ALL/JE_su03.wav": ("su", "surprised", "JE", "M", None, None),
        },
        {
            "AudioData/DC/x01.wav": "does not match",
            "AudioData/Other/a01.wav": "no speaker",
            "AudioData/KL/DC_a02.wav": "disagrees with its folder",
        },
        {},
    ),
    "IEMOCAP": (
        {
            "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav": ("neu", "neutral", "Ses01F", "F", None, "Session1"),
            "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M001.wav": ("fru", "frustrated", "Ses01M", "M", None, "Session1"),
            "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F002.wav": ("xxx", "no_agreement", "Ses01F", "F", None, "Session1"),
            "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F000.wav": ("exc", "excited", "Ses02F", "F", None, "Session2"),
        },
        {
            "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F099.wav": "no label",
            "Session1/sentences/wav/Ses01F_impro01/notes.wav": "not an IEMOCAP utterance id",
            "Session1/sentences/Ses01F_impro01_F000.wav": "not under SessionN/sentences/wav",
            # no audio: reported from the label file
            "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_M003.wav": "audio file is missing",
        },
        {
            "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt": (
                "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
                "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
                "C-E2:\tNeutral;\t()\n\n"
                "[10.0100 - 11.3925]\tSes01F_impro01_M001\tfru\t[2.5000, 3.5000, 3.5000]\n"
                "[12.0000 - 13.0000]\tSes01F_impro01_F002\txxx\t[2.0000, 3.0000, 3.0000]\n"
                "[14.0000 - 15.0000]\tSes01F_impro01_M003\tang\t[2.0000, 4.0000, 4.0000]\n"
            ),
            "Session2/dialog/EmoEvaluation/Ses02M_script01_1.txt": (
                "[1.0000 - 2.0000]\tSes02M_script01_1_F000\texc\t[4.0000, 4.0000, 3.0000]\n"
            ),
        },
    ),
    "MSP-Podcast": (
        {
            "Audios/MSP-PODCAST_0001_0008.wav": ("N", "neutral", "127", "F", None, "Train"),
            "Audios/MSP-PODCAST_0002_0001.wav": ("A", "angry", "Unknown", None, None, "Development"),
            "Audios/MSP-PODCAST_0003_0001.flac": ("H", "happy", "3", "M", None, "Test1"),
            "Audios/MSP-PODCAST_0004_0001.wav": ("X", "no_agreement", "3", "M", None, "Test2"),
        },
        {
            "Audios/MSP-PODCAST_9999_0001.wav": "not listed in labels_consensus.csv",
            "Audios/MSP-PODCAST_0009_0009.wav": "audio file is missing",
            "Audios/MSP-PODCAST_0010_0001.wav": "label code 'Q'",
        },
        {
            "Labels/labels_consensus.csv": (
                "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
                "MSP-PODCAST_0001_0008.wav,N,3.0,4.2,3.4,127,Female,Train\n"
                "MSP-PODCAST_0002_0001.wav,A,5.0,2.0,5.0,Unknown,Unknown,Development\n"
                "MSP-PODCAST_0003_0001.wav,H,4.0,6.0,4.0,3,Male,Test1\n"
                "MSP-PODCAST_0004_0001.wav,X,4.0,4.0,4.0,3,Male,Test2\n"
                "MSP-PODCAST_0009_0009.wav,S,2.0,2.0,2.0,5,Male,Train\n"
                "MSP-PODCAST_0010_0001.wav,Q,2.0,2.0,2.0,5,Male,Train\n"
            )
        },
    ),
    "EmoDB": (
        {
            "wav/03a01Fa.wav": ("F", "happy", "03", "M", "a01", None),
            "wav/08b10Wb.flac": ("W", "angry", "08", "F", "b10", None),
            "wav/16a05Lc.wav": ("L", "boredom", "16", "F", "a05", None),
        },
        {"wav/03a01Fa_copy.wav": "does not match", "wav/17a01Fa.wav": "speaker 17"},
        {},
    ),
    "EMOVO": (
        {
            "f1/dis-f1-b1.wav": ("dis", "disgust", "f1", "F", "b1", None),
            "m3/tri-m3-n5.flac": ("tri", "sad", "m3", "M", "n5", None),
        },
        {"f1/dis-m1-b1.wav": "disagrees with its folder", "f1/xyz-f1-b1.wav": "does not match"},
        {},
    ),
    "CaFE": (
        {
            "Colère/Faible/01-C-1-1.wav": ("C", "angry", "01", "M", "1", None),
            "Joie/Fort/04-J-2-6.flac": ("J", "happy", "04", "F", "6", None),
            "Neutre/07-N-3.wav": ("N", "neutral", "07", "M", "3", None),
        },
        {"Joie/Fort/01-J-2-7.wav": "does not match", "Peur/Fort/01-X-2-1.wav": "does not match"},
        {},
    ),
    "ShEMO": (
        {
            "female/F01A01.wav": ("A", "angry", "F01", "F", None, None),
            "male/M12N05.flac": ("N", "neutral", "M12", "M", None, None),
        },
        {"male/F02H01.wav": "disagrees with its folder", "female/F01X01.wav": "does not match"},
        {},
    ),
    "URDU": (
        {
            "Angry/SM4_F2_A054.wav": ("A", "angry", "SM4", "M", None, None),
            "Sad/SF1_F3_S12.flac": ("S", "sad", "SF1", "F", None, None),
        },
        {
            "Happy/SM1_F1_A01.wav": "disagrees with its folder",
            "Neutral/SM1-F1-N01.wav": "does not match",
            "Calm/SM1_F1_N01.wav": "not one of Angry/Happy/Neutral/Sad",
        },
        {},
    ),
    "TurEV-DB": (
        {
            "Angry/1157_kz_beste.wav": ("kz", "angry", "1157", None, "beste", None),
            "Calm/1234_sk_algi.flac": ("sk", "calm", "1234", None, "algi", None),
            "Sad/1358_hl_acik.wav": ("hl", "sad", "1358", None, "acik", None),
            "Sad/7895_hl_ogul1.wav": ("hl", "sad", "7895", None, "ogul", None),  # a digit after the word
        },
        {
            "Happy/1157_kz_okul.wav": "emotion code 'kz' in the name disagrees with its folder 'Happy'",
            "Sad/badname.wav": "does not match",
            "Sad/7895_hl_1ogul.wav": "does not match",
            "Other/1157_kz_kalem.wav": "not one of Angry/Calm/Happy/Sad",
        },
        {},
    ),
    "ASED": (
        {
            "01Neutral/n1-01-01-01-01.wav": ("n", "neutral", "01", "F", "01", None),
            "04Sad/S4-04-02-01-29.flac": ("s", "sad", "29", "F", "s04", None),  # upper-case code, as published
            "04Sad/s4-02-01-01-29.flac": ("s", "sad", "29", "F", "02", None),
            "02Fearful/f2-01-01-02-29.wav": ("f", "fearful", "29", "F", "01", None),  # minority gender code: the participant's
            "05Angry/a5-03-01-02-50.wav": ("a", "angry", "50", "M", "a03", None),
        },
        {
            "03Happy/a5-03-01-02-50.wav": "disagrees with its folder '03Happy'",
            "05Angry/a4-03-01-02-50.wav": "emotion letter 'a' and folder number 4 disagree",
            "05Angry/a5-08-01-02-50.wav": "does not match ASED naming",
            "05Angry/a5-03-01-03-50.wav": "does not match ASED naming",
        },
        {},
    ),
    "AESDD": (
        {
            "anger/a01 (1).wav": ("a", "angry", "1", None, "01", None),
            "happiness/h20 (5)b.wav": ("h", "happy", "5", None, "20", None),
            "sadness/s05 (3).flac": ("s", "sad", "3", None, "05", None),
        },
        {"fear/d01 (1).wav": "disagrees with its folder", "fear/f01.wav": "does not match"},
        {},
    ),
    "CASIA": (
        {
            "CASIA database/liuchanhg/angry/201.wav": ("angry", "angry", "liuchanhg", "F", "201", None),
            "CASIA database/ZhaoZuoxiang/surprise/250.flac": ("surprise", "surprised", "ZhaoZuoxiang", "M", "250", None),
        },
        {"CASIA database/wangzhe/bored/201.wav": "not an emotion", "CASIA database/wangzhe/happy/abc.wav": "does not match"},
        {},
    ),
    "SUBESCO": (
        {
            "F_01_OISHI_S_1_ANGRY_1.wav": ("ANGRY", "angry", "F_01", "F", "1", None),
            "M_10_RAKIB_S_10_SURPRISE_5.flac": ("SURPRISE", "surprised", "M_10", "M", "10", None),
        },
        {"F_01_OISHI_S_1_ANGRY.wav": "does not match", "M_02_X_S_1_BORED_1.wav": "label code 'BORED'"},
        {},
    ),
    "KoreanEmotionTTS": (
        {
            "emotional-to-emotional/nea/wav/nea00001.wav": ("neutral", "neutral", "nea", "F", "00001", None),
            "plain-to-emotional/emf/wav/emf00399.flac": ("angry", "angry", "emf", "M", "00399", None),
            "plain-to-emotional/emf/wav/emf00201.flac": ("sad", "sad", "emf", "M", "00201", None),
            "emotional-to-emotional/neo/wav/neo00150.wav": ("happy", "happy", "neo", "M", "00150", None),
        },
        {
            "emotional-to-emotional/nea/wav/neb00001.wav": "not under <part>/neb/wav/",
            "emotional-to-emotional/nea/wav/nea00401.wav": "outside 1-400",
            "emotional-to-emotional/nea/nea00002.wav": "not under <part>/nea/wav/",
            "emotional-to-emotional/nea/wav/nea0001.wav": "does not match",
        },
        {},
    ),
    "ESD": (
        {
            "Emotion Speech Dataset/0001/Neutral/0001_000001.wav": ("Neutral", "neutral", "0001", None, "001", None),
            "Emotion Speech Dataset/0011/Angry/train/0011_000351.flac": ("Angry", "angry", "0011", None, "001", "train"),
            "Emotion Speech Dataset/0020/Surprise/test/0020_001750.wav": ("Surprise", "surprised", "0020", None, "350", "test"),
        },
        {
            "Emotion Speech Dataset/0001/Happy/0001_000001.wav": "is Neutral, but the file is in folder 'Happy'",
            "Emotion Speech Dataset/0002/Sad/0001_001100.wav": "not under 0001/<Emotion>/",
            "Emotion Speech Dataset/0001/Sad/0001_001800.wav": "outside 1-1750",
            "Emotion Speech Dataset/0001/Sad/0001-001100.wav": "does not match",
        },
        {"Emotion Speech Dataset/0001/0001.txt": "0001_000001\t打远一看，它们的确很是美丽，\t中立\n"},
    ),
    "MESD": (
        {
            "Mexican Emotional Speech Database (MESD)/Anger_C_A_abajo.wav": ("Anger", "angry", "C", None, "abajo", "corpusA"),
            "Mexican Emotional Speech Database (MESD)/Sadness_F_B_llanto.flac": ("Sadness", "sad", "F", "F", "llanto", "corpusB"),
            "Mexican Emotional Speech Database (MESD)/Neutral_M_A_adios.wav": ("Neutral", "neutral", "M", "M", "adios", "corpusA"),
        },
        {
            "Mexican Emotional Speech Database (MESD)/Anger_X_A_abajo.wav": "does not match",
            "Mexican Emotional Speech Database (MESD)/Joy_F_A_abajo.wav": "label code 'Joy'",
        },
        {},
    ),
}


LANGUAGES = {  # rows whose language differs from their corpus's main language
    "Emotion Speech Dataset/0011/Angry/train/0011_000351.flac": "en",
    "Emotion Speech Dataset/0020/Surprise/test/0020_001750.wav": "en",
}


def test_registry_covers_required_corpora_and_languages():
    required = {
        "RAVDESS", "CREMA-D", "TESS", "SAVEE", "IEMOCAP", "MSP-Podcast", "EmoDB", "EMOVO", "CaFE",
        "ShEMO", "URDU", "TurEV-DB", "AESDD", "CASIA", "SUBESCO", "KoreanEmotionTTS",
    }
    assert required <= set(CORPORA)
    assert len({spec.language for spec in CORPORA.values()}) >= 10
    assert set(CASES) == set(CORPORA), "every registered reader has a fixture test"


@pytest.mark.parametrize("name", sorted(CASES))
def test_reader_on_fixture_tree(tmp_path, name):
    valid, malformed, texts = CASES[name]
    present = [rel for rel, reason in malformed.items() if "audio file is missing" not in reason]
    build(tmp_path, list(valid) + present, texts)
    listing = list_corpus(name, tmp_path)
    got = {
        r.path.relative_to(tmp_path).as_posix(): (r.label, r.canonical, r.speaker, r.gender, r.sentence, r.partition)
        for r in listing.rows
    }
    assert got == valid
    assert all(r.corpus == name for r in listing.rows)
    languages = {r.path.relative_to(tmp_path).as_posix(): r.language for r in listing.rows}
    expected_languages = {rel: LANGUAGES.get(rel, CORPORA[name].language) for rel in valid}
    assert languages == expected_languages
    reported = {u.path.relative_to(tmp_path).as_posix(): u.reason for u in listing.unmatched}
    assert set(reported) == set(malformed)
    for rel, reason in malformed.items():
        assert reason in reported[rel], (rel, reported[rel])
    # read_corpus returns the same rows and says that files were left out
    with pytest.warns(UnmatchedFilesWarning, match=f"{len(malformed)} files"):
        assert read_corpus(name, tmp_path) == listing.rows


def test_nothing_matches_names_expected_layout(tmp_path):
    build(tmp_path, ["Angry/SM4_F2_A054.wav"])
    with pytest.raises(CorpusLayoutError, match=r"RAVDESS: .* yields no rows \(1 audio files matched no pattern\)\. Expected layout: Actor_AA/"):
        read_corpus("RAVDESS", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusLayoutError, match="no audio files"):
        read_corpus("EMOVO", tmp_path / "empty")
    with pytest.raises(CorpusLayoutError, match="is not a directory"):
        read_corpus("EMOVO", tmp_path / "absent")
    with pytest.raises(KeyError, match="unknown corpus 'NOPE'"):
        read_corpus("NOPE", tmp_path)


def test_name_lookup_is_case_insensitive(tmp_path):
    build(tmp_path, ["f1/dis-f1-b1.wav"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_corpus("emovo", tmp_path)) == 1


def test_label_tables_are_canonical_and_four_class():
    for spec in CORPORA.values():
        assert set(spec.labels.values()) <= set(CANONICAL), spec.name
        assert set(spec.class_set) <= set(spec.labels.values()), spec.name
    assert FOUR_CLASSES == ("neutral", "happy", "angry", "sad")
    assert to_four_class("excited") == "happy" and to_four_class("fearful") is None
    with pytest.raises(ValueError, match="unknown canonical emotion"):
        to_four_class("joy")
