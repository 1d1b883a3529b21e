#!/usr/bin/env python3
"""Writes the pickle fixtures of core/tests/pickle.rs under core/tests/fixtures/pickle/.

EVA, MCLEA and MEAformer distribute image features as pickled dicts {entity id: numpy float32 vector}
(`zh_en_GA_id_img_feature_dict.pkl`, `FB15K-DB15K_id_img_feature_dict.pkl`, ...). None of those files
could be obtained, so these fixtures are small dicts in the same format, written by pickle and numpy
themselves, plus hand-assembled ones for what this numpy cannot write:

- `p{2,3,4,5}.pkl`: 5 entities, dim 7, float32, keys of every integer width (BININT1, BININT2, BININT,
  LONG1), in a non-sorted insertion order. Protocol 2 from Python 3 stores the raw data through
  `_codecs.encode(str, 'latin1')`; 3 and 4 use `_reconstruct` + BUILD with SHORT_BINBYTES/BINBYTES;
  5 uses `numpy._core.numeric._frombuffer` with BYTEARRAY8.
- `p2_numpy1.pkl`, `p5_numpy1.pkl`: the same as numpy 1.x writes them (`numpy.core.multiarray`,
  `numpy.core.numeric`). The installed numpy is 2.x, which writes `numpy._core.*`, so these are made by
  editing the module names: in protocol 2 the GLOBAL opcode is the text
  `cnumpy._core.multiarray\\n_reconstruct\\n`; in protocol 5 the module is a SHORT_BINUNICODE string
  (re-emitted with its new length, FRAME opcodes dropped, which pickle allows). Both are checked by
  loading them back with pickle (numpy 2 still imports `numpy.core`).
- `py2_p2.pkl`: what Python 2 with numpy 1.x writes for protocol 2: `numpy.core.multiarray`, the raw
  data as a Python 2 `str` (SHORT_BINSTRING / BINSTRING), the dtype as `dtype('f4', 0, 1)` with its
  byte order a `str`, and an int and a long (LONG1) key. Assembled opcode by opcode (no Python 2 here)
  and checked by loading it back with `pickle.loads(..., encoding='latin1')`, as Python 3 loads
  Python 2 pickles.
- `p4_f64.pkl` (float64, read as float32), `p4_strkeys.pkl` (str keys), `p3_row2d.pkl` ((1, d) rows),
  `p4_dim100.pkl` (BINBYTES), `p5_many.pkl` (1,001 keys: several SETITEMS batches), `p4_npkeys.pkl`
  (numpy.int64 keys, through `numpy._core.multiarray.scalar`).
- refused: `hostile_*.pkl` (`posix.system`, `os.system`, `builtins.eval`, `subprocess.Popen`, REDUCE on a
  non-global), `bad_*.pkl` (a str value, a list value, int32, big-endian float32, mixed dims, an empty
  dict), `trunc_*.pkl` (truncated copies of `p4.pkl` and `p2.pkl`). The hostile ones are written by
  `pickle.dumps` of an object whose `__reduce__` returns `(os.system, ("touch ...",))` or by hand; this
  script never loads them.
- `expected.json`: for every loadable fixture, the ids (decimal strings, insertion order), the dim and
  the float32 values as their bit patterns (u32), for bit-exact comparison.

Running it again writes identical files (fixed values, no randomness). Written with the Python and
numpy versions recorded in README.md next to the fixtures (Python 3.11.7, numpy 2.4.6 when checked in).

Usage: python3 scripts/make-pickle-fixtures.py   (needs numpy: pip install numpy)
"""

import json
import os
import pathlib
import pickle
import pickletools
import struct
import subprocess
import sys

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "core" / "tests" / "fixtures" / "pickle"
# Written into the hostile payloads; the Rust test checks it never appears.
MARKER = "/tmp/mmea-pickle-fixture-executed"

expected = {}
written = []


def write(name, data):
    (OUT / name).write_bytes(data)
    written.append(name)


def vectors(keys, dim, dtype=np.float32, shape=None):
    """Known values: row r, column j is r * 0.5 + j + j / 7 (so most are not exact in binary)."""
    d = {}
    for r, k in enumerate(keys):
        v = np.array([r * 0.5 + j + j / 7.0 for j in range(dim)], dtype=np.float64).astype(dtype)
        d[k] = v.reshape(shape) if shape is not None else v
    return d


def expect(name, d):
    """Records what the reader must return for fixture `name` (the dict `d` it holds)."""
    ids, bits, dim = [], [], None
    for k, v in d.items():
        flat = np.asarray(v).reshape(-1).astype(np.float32)
        dim = flat.shape[0]
        ids.append(str(int(k)) if not isinstance(k, str) else k)
        bits.append([int(b) for b in flat.view(np.uint32)])
    expected[name] = {"ids": ids, "dim": dim, "bits": bits}


def same(a, b):
    assert list(a.keys()) == list(b.keys()), (list(a.keys()), list(b.keys()))
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), k


def reemit(data, edit):
    """Re-emits a pickle opcode by opcode, dropping FRAME, with `edit(opcode, arg, raw)` -> raw bytes."""
    ops = list(pickletools.genops(data))
    out = bytearray()
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        raw = data[pos:end]
        if op.name == "FRAME":
            continue
        out += edit(op, arg, raw)
    return bytes(out)


def rename_modules(op, arg, raw):
    if op.name == "SHORT_BINUNICODE" and arg in ("numpy._core.multiarray", "numpy._core.numeric"):
        s = arg.replace("numpy._core.", "numpy.core.").encode()
        return b"\x8c" + bytes([len(s)]) + s
    return raw


# --- opcode helpers for hand-assembled pickles --------------------------------------------------------

def short_binstring(b):  # Python 2 str, < 256 bytes
    return b"U" + bytes([len(b)]) + b


def binstring(b):  # Python 2 str
    return b"T" + struct.pack("<i", len(b)) + b


def py2_str(b):
    return short_binstring(b) if len(b) < 256 else binstring(b)


def py2_int(i):
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)
    return b"J" + struct.pack("<i", i)


def py2_long(i):  # LONG1, as Python 2 writes a `long` in protocol 2
    n = (i.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + i.to_bytes(n, "little", signed=True)


def py2_pickle(entries):
    """Protocol 2 as Python 2 + numpy 1.x writes {key: float32 vector} (memo puts as in cPickle)."""
    out = bytearray(b"\x80\x02}q\x00(")
    memo = [1]

    def put():
        i = memo[0]
        memo[0] += 1
        return b"q" + bytes([i])

    for key, vec in entries:
        out += py2_long(key) if key >= 2**31 else py2_int(key)
        out += b"cnumpy.core.multiarray\n_reconstruct\n" + put()
        out += b"cnumpy\nndarray\n" + put()
        out += b"K\x00\x85" + put() + short_binstring(b"b") + put() + b"\x87" + put() + b"R" + put()
        out += b"(K\x01" + py2_int(len(vec)) + b"\x85" + put()
        out += b"cnumpy\ndtype\n" + put() + short_binstring(b"f4") + put() + b"K\x00K\x01\x87" + put() + b"R" + put()
        out += b"(K\x03" + short_binstring(b"<") + put() + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t" + put() + b"b"
        out += b"\x89" + py2_str(vec.astype("<f4").tobytes()) + put() + b"t" + put() + b"b"
    out += b"u."
    return bytes(out)


class Reduce:
    """pickle.dumps(Reduce(f, args)) writes a REDUCE of f on args; nothing is called while dumping."""

    def __init__(self, f, args):
        self.f, self.args = f, args

    def __reduce__(self):
        return (self.f, self.args)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.pkl"):
        old.unlink()

    keys = [7, 3, 300, 70000, 2**33]  # BININT1, BININT1, BININT2, BININT, LONG1; not sorted
    base = vectors(keys, 7)
    for proto in (2, 3, 4, 5):
        name = f"p{proto}.pkl"
        data = pickle.dumps(base, protocol=proto)
        write(name, data)
        same(pickle.loads(data), base)
        expect(name, base)

    # numpy 1.x module names.
    p2 = pickle.dumps(base, protocol=2)
    assert p2.count(b"cnumpy._core.multiarray\n_reconstruct\n") == 1
    p2_np1 = p2.replace(b"cnumpy._core.multiarray\n_reconstruct\n", b"cnumpy.core.multiarray\n_reconstruct\n")
    p5_np1 = reemit(pickle.dumps(base, protocol=5), rename_modules)
    assert b"numpy._core" not in p2_np1 and b"numpy._core" not in p5_np1 and b"numpy.core.numeric" in p5_np1
    for name, data in (("p2_numpy1.pkl", p2_np1), ("p5_numpy1.pkl", p5_np1)):
        write(name, data)
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            same(pickle.loads(data), base)
        expect(name, base)

    # Python 2 + numpy 1.x, protocol 2: dim 70 (280 bytes: BINSTRING) and dim 7 (SHORT_BINSTRING) rows.
    py2 = [(5, vectors([0], 70)[0]), (2**40, vectors([0, 1], 70)[1]), (12, vectors([0, 1, 2], 70)[2])]
    data = py2_pickle(py2)
    write("py2_p2.pkl", data)
    back = pickle.loads(data, encoding="latin1")
    same(back, dict(py2))
    expect("py2_p2.pkl", dict(py2))
    small = [(1, vectors([0], 7)[0]), (2, vectors([0, 1], 7)[1])]
    data = py2_pickle(small)
    write("py2_p2_short.pkl", data)
    same(pickle.loads(data, encoding="latin1"), dict(small))
    expect("py2_p2_short.pkl", dict(small))

    f64 = vectors(keys, 7, dtype=np.float64)
    write("p4_f64.pkl", pickle.dumps(f64, protocol=4))
    expect("p4_f64.pkl", f64)

    skeys = vectors(["http://dbpedia.org/resource/Paris", "Zürich", "京都", "e3"], 5)
    write("p4_strkeys.pkl", pickle.dumps(skeys, protocol=4))
    expect("p4_strkeys.pkl", skeys)

    row2d = vectors([1, 2, 3], 6, shape=(1, 6))
    write("p3_row2d.pkl", pickle.dumps(row2d, protocol=3))
    expect("p3_row2d.pkl", row2d)

    dim100 = vectors([11, 22, 33], 100)
    write("p4_dim100.pkl", pickle.dumps(dim100, protocol=4))
    expect("p4_dim100.pkl", dim100)

    many = vectors(list(range(1000, -1, -1)), 2)
    write("p5_many.pkl", pickle.dumps(many, protocol=5))
    expect("p5_many.pkl", many)

    npkeys = {np.int64(k): v for k, v in vectors([9, 4, 123456789], 3).items()}
    data = pickle.dumps(npkeys, protocol=4)
    assert b"scalar" in data
    write("p4_npkeys.pkl", data)
    expect("p4_npkeys.pkl", npkeys)

    # --- refused ---------------------------------------------------------------------------------------
    payload = f"touch {MARKER}"
    one = vectors([1], 4)[1]
    # What pickle writes for os.system on Linux: the global `posix.system`.
    write("hostile_posix_system.pkl", pickle.dumps({1: one, 2: Reduce(os.system, (payload,))}, protocol=4))
    write("hostile_eval.pkl", pickle.dumps({1: one, 2: Reduce(eval, (f"__import__('os').system({payload!r})",))}, protocol=3))
    write("hostile_popen.pkl", pickle.dumps({1: one, 2: Reduce(subprocess.Popen, (["touch", MARKER],))}, protocol=5))
    # By hand: protocol 2, the text GLOBAL `os system`, called with REDUCE.
    write("hostile_os_system.pkl", b"\x80\x02}q\x00K\x01cos\nsystem\nq\x01X" + struct.pack("<I", len(payload)) + payload.encode() + b"\x85Rs.")
    # By hand: REDUCE whose callable is a tuple, not a global.
    write("hostile_reduce_tuple.pkl", b"\x80\x04}\x94K\x01K\x02\x85)R\x94s.")

    write("bad_str_value.pkl", pickle.dumps({1: one, 2: "not an array"}, protocol=4))
    write("bad_list_value.pkl", pickle.dumps({1: one, 2: [1.0, 2.0]}, protocol=4))
    write("bad_int32.pkl", pickle.dumps({1: np.arange(4, dtype=np.int32)}, protocol=4))
    write("bad_bigendian.pkl", pickle.dumps({1: one.astype(">f4")}, protocol=4))
    write("bad_mixed_dims.pkl", pickle.dumps({1: one, 2: vectors([0], 5)[0]}, protocol=4))
    write("bad_empty.pkl", pickle.dumps({}, protocol=4))
    write("bad_matrix.pkl", pickle.dumps({1: np.ones((2, 3), np.float32)}, protocol=4))

    p4 = pickle.dumps(base, protocol=4)
    write("trunc_p4_half.pkl", p4[: len(p4) // 2])
    write("trunc_p2_nostop.pkl", p2[:-1])

    (OUT / "expected.json").write_text(json.dumps(expected, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n", encoding="utf-8")
    py = ".".join(map(str, sys.version_info[:3]))
    (OUT / "README.md").write_text(
        "# Pickle fixtures\n\n"
        "Small image-feature dicts in the format of EVA/MCLEA/MEAformer's `*_id_img_feature_dict.pkl`, and\n"
        "hostile, malformed and truncated ones, for `core/tests/pickle.rs`. Written by\n"
        "`scripts/make-pickle-fixtures.py` (its docstring says what each file is); running it again writes\n"
        "identical files.\n\n"
        f"Written with Python {py} and numpy {np.__version__}.\n\n"
        "The `hostile_*.pkl` files call `os.system`, `eval` or `subprocess.Popen` when loaded with Python's\n"
        "`pickle`: never load them with Python.\n",
        encoding="utf-8",
    )
    print(f"wrote {len(written)} pickles, expected.json and README.md to {OUT}")


if __name__ == "__main__":
    main()
