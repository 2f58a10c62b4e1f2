"""The codec's public surface is pinned, it is this repository's ``codec``, and it stands alone:
importing and using it loads nothing of the relay, Twisted or PostgreSQL (house rule 12)."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import codec

REPO = Path(__file__).resolve().parents[2]

PUBLIC = {
    # entry points
    "FrameReader", "decode_frame", "encode_frame", "resolve", "answer", "frame_to_json", "frame_from_json",
    "Frame", "MAX_DATA_LENGTH", "CST", "Keys",
    # enumerations
    "Edition", "Command", "Response", "Encryption",
    # bodies
    "RealtimeData", "PendingRealtime", "Signature", "VehicleLogin", "Logout", "PlatformLogin", "TimeOnly", "Opaque", "Undecoded",
    "ParamList", "ParamQuery", "TerminalControl", "ChargingMessage",
    # errors
    "CodecError", "EncodeError", "FrameError", "Garbage", "BadChecksum", "Truncated", "BadLength",
    "UnknownCommand", "BadHeader", "BadVin", "BadTime", "BadBody", "Undecryptable",
}

FORBIDDEN = ("relay", "platforms", "twisted", "psycopg", "psycopg_pool", "structlog", "pgserver")

#: run in a fresh interpreter: import every codec module, exercise every command family, report modules
PROBE = r"""
import importlib, json, pkgutil, sys
import codec
for module in pkgutil.iter_modules(codec.__path__):  # every codec module, not only the re-exported ones
    importlib.import_module("codec." + module.name)
from codec import Keys, decode_frame, encode_frame, frame_to_json, FrameReader
with open(sys.argv[1]) as f:
    vectors = json.load(f)
for v in vectors:
    frame = decode_frame(bytes.fromhex(v["hex"]))
    frame_to_json(frame)
    FrameReader().feed(encode_frame(frame))
keys = Keys(aes128=bytes(16), aes_iv=bytes(16))
frame = decode_frame(bytes.fromhex(vectors[-1]["hex"]))
decode_frame(encode_frame(frame.__class__(frame.edition, frame.command, frame.response, frame.vin, 3,
                                          frame.body), keys), keys)
print(json.dumps({"file": codec.__file__,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
""" % (FORBIDDEN,)


def test_public_surface_is_exactly_the_listed_names():
    assert len(codec.__all__) == len(set(codec.__all__)), "duplicate names in codec.__all__"
    assert set(codec.__all__) == PUBLIC


def test_every_public_name_is_importable_and_defined_inside_codec():
    for name in codec.__all__:
        obj = getattr(codec, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("codec."), (name, obj.__module__)
    assert codec.MAX_DATA_LENGTH == 65531
    assert codec.CST.utcoffset(None).total_seconds() == 8 * 3600


def test_error_classes_form_one_tree_with_stable_reasons():
    reasons = {
        "Garbage": "garbage", "BadChecksum": "bad_bcc", "Truncated": "truncated", "BadLength": "bad_length",
        "UnknownCommand": "unknown_command", "BadHeader": "bad_header", "BadVin": "bad_vin",
        "BadTime": "bad_time", "BadBody": "bad_body", "Undecryptable": "undecryptable",
    }
    for name, reason in reasons.items():
        cls = getattr(codec, name)
        assert issubclass(cls, codec.FrameError) and issubclass(cls, codec.CodecError)
        assert cls.reason == reason
    assert issubclass(codec.EncodeError, codec.CodecError) and issubclass(codec.EncodeError, ValueError)


def test_codec_is_the_one_in_this_repository():
    assert Path(codec.__file__).resolve().is_relative_to(REPO)
    assert Path(codec.__file__).resolve().parent == REPO / "codec"


def test_using_the_codec_loads_nothing_of_the_relay_twisted_or_postgresql(tmp_path):
    vectors = REPO.parent / "shared" / "vectors" / "rtm_con_samples.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("PYTHONSTARTUP", None)
    done = subprocess.run([sys.executable, "-c", PROBE, str(vectors)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["modules"] == []
    assert Path(report["file"]).resolve() == REPO / "codec" / "__init__.py"
