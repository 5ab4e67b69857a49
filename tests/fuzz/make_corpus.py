#!/usr/bin/env python3
"""make_corpus.py -- (re)write the regression corpus tests/fuzz/corpus/<target>/.

Each file is one input of the matching fuzz target (tests/fuzz/fuzz_<target>.c; see each target
for the meaning of its leading selector byte).  The corpus holds the inputs issue 9 reported
(the (0, 1518500250) NPY pair, the 146-byte NPY that asked for 1 GB, the 26- and 132-byte IDX.gz
that asked for 2 GB and 13 GB, the 116-byte state.json with d = 100000, the checkpoint with
epoch 2^63) plus small valid and malformed seeds.  The valid checkpoints valid_kind<k> (version
1) and valid_v2_kind<k> (version 2, with a small run record) were written by
gmf_train_save_checkpoint[_run] for the target's models (d 3, L 2, K 2, width 2, mid 2;
params 0.25 i - 1, epoch 7, seed 42) and are kept; the variants are derived from them here.
Run from the repository root: /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import gzip
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def npy(shape, payload=b"", descr="<f8", version=1):
    dims = ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "")
    d = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    pre = 10 if version == 1 else 12
    hl = (pre + len(d) + 1 + 63) // 64 * 64 - pre
    h = (d + " " * (hl - len(d) - 1) + "\n").encode()
    ln = struct.pack("<H", hl) if version == 1 else struct.pack("<I", hl)
    return b"\x93NUMPY" + bytes([version, 0]) + ln + h + payload


def gz(data):
    return gzip.compress(data, mtime=0)


def gz_member(data, flags=0):
    """A gzip member by hand: header with FEXTRA (flag 4), FNAME (8), FHCRC (2) as asked."""
    h = bytearray(b"\x1f\x8b\x08" + bytes([flags]) + b"\x00" * 5 + b"\x03")
    if flags & 4:
        h += struct.pack("<H", 4) + b"AB\x00\x00"
    if flags & 8:
        h += b"x-ubyte\x00"
    if flags & 2:
        h += struct.pack("<H", zlib.crc32(bytes(h)) & 0xFFFF)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    return bytes(h) + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def idx_images(n, r, c, payload=b""):
    return b"\x00\x00\x08\x03" + struct.pack(">III", n, r, c) + payload


def idx_labels(n, payload=b""):
    return b"\x00\x00\x08\x01" + struct.pack(">I", n) + payload


def csv():
    put("csv", "valid", b"x1,x2,y\n0.5,1,2\n# comment\n\n-1e-3,2,3\r\n")
    put("csv", "no_header", b"1,2\n3,4\n")
    num203 = b"1." + b"0" * 197 + b"1e-2"  # 203 characters, a valid number
    assert len(num203) == 203
    put("csv", "number_203_chars", b"x,y\n" + num203 + b",1\n2," + num203 + b"\n")
    put("csv", "nul_byte", b"1,2\n3\x004\n")
    put("csv", "nan", b"1,nan\n")
    put("csv", "ragged", b"1,2,3\n4,5\n")
    put("csv", "empty", b"")
    put("csv", "zeros_no_newline", b"\0" * 4096)


def state():
    # the 116-byte state of issue 9 (ours: 109 bytes): d = 100000 (80 GB for Sigma) in a tiny file
    s = (b'{"format":"gmflow-state","version":1,"form":"bw","t":0,"K":1,"d":100000,'
         b'"mu":[[0,1]],"Sigma":[[[1,0],[0,1]]]}')
    put("state", "d100000_%d_bytes" % len(s), s)
    put("state", "K1000000_d1", s.replace(b'"K":1,', b'"K":1000000,').replace(b'100000,', b'1,'))
    put("state", "valid_bw", b'{"format":"gmflow-state","version":1,"form":"bw","t":0.5,"K":1,'
        b'"d":1,"mu":[[0.5,1]],"Sigma":[[[1,0],[0,0]]]}')
    put("state", "valid_euclid", b'{"format":"gmflow-state","version":1,"form":"euclid","t":0,'
        b'"K":1,"d":1,"mu":[[0,1]],"Sigma":[[[4,0],[0,0]]],"C":[[[2,0],[0,0]]]}')
    put("state", "deep", b"[" * 100 + b"]" * 100)
    put("state", "bad_escape", b'{"format":"\\ud800x"}')


def npy_corpus():
    # the (0, 1518500250) pair of issue 9 (K = 0; d*d*8 wraps size_t in `project`)
    put("npy", "shape_0_1518500250", npy((0, 1518500250)))
    # 146 bytes asking for 1 GB: shape (134217728,) with 18 payload bytes
    a = npy((134217728,), b"\0" * 18)
    put("npy", "1GB_declared_146_bytes", a)
    put("npy", "overflow_shape", npy((1 << 40, 1 << 40, 1 << 40)))
    put("npy", "valid_2x3", npy((2, 3), struct.pack("<6d", 1, 2, 3, 4, 5, 6)))
    put("npy", "valid_v2_scalar", npy((), struct.pack("<d", 3.5), version=2))
    put("npy", "trailing", npy((1,), b"\0" * 9))
    put("npy", "dtype_f4", npy((1,), b"\0" * 4, descr="<f4"))
    put("npy", "nine_dims", npy((1,) * 9, b"\0" * 8))


def idx_raw():
    put("idx_raw", "valid_images", b"\x01" + idx_images(2, 2, 2, bytes(range(8))))
    put("idx_raw", "valid_labels", b"\x00" + idx_labels(3, b"\x00\x01\x09"))
    put("idx_raw", "images_47MB_declared", b"\x01" + idx_images(60000, 28, 28, b"\1" * 10))
    put("idx_raw", "images_overflow", b"\x01" + idx_images(0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF))
    put("idx_raw", "images_zero_rows", b"\x01" + idx_images(1, 0, 5))
    put("idx_raw", "labels_4GB_declared", b"\x00" + idx_labels(0xFFFFFFFF, b"\1"))
    put("idx_raw", "wrong_magic", b"\x01" + idx_labels(1, b"\1"))


def idx_gz():
    # the 26-byte IDX.gz of issue 9: a labels header declaring 2^31 - 1 bytes, nothing else
    small = gz(idx_labels(0x7FFFFFFF))
    put("idx_gz", "labels_2GB_declared_%d_bytes" % len(small), b"\x00" + small)
    # 132 bytes declaring 13 GB of images (plus some pixels)
    big = gz(idx_images(0xFFFF, 0xFFFF, 3, b"\x55" * 200))
    put("idx_gz", "images_13GB_declared_%d_bytes" % len(big), b"\x01" + big)
    put("idx_gz", "valid_images", b"\x01" + gz(idx_images(2, 2, 2, bytes(range(8)))))
    put("idx_gz", "valid_labels_two_members",
        b"\x00" + gz(idx_labels(3)[:6]) + gz(idx_labels(3)[6:] + b"\x00\x01\x02"))
    v = gz(idx_labels(3, b"\x00\x01\x02"))
    put("idx_gz", "truncated", b"\x00" + v[:-5])
    put("idx_gz", "trailing_garbage", b"\x00" + v + b"junk")
    put("idx_gz", "crc_flipped", b"\x00" + v[:-8] + bytes([v[-8] ^ 1]) + v[-7:])
    # for the libdeflate path (whole file, member by member): a header with FNAME, FEXTRA and a
    # header CRC; three members, one empty; a second member holding 2 bytes too many; real
    # dynamic-Huffman blocks to mutate
    px = bytes((i * 37 + (i >> 5) * 11) % 97 for i in range(1200))
    put("idx_gz", "fhcrc_fextra_fname_images", b"\x01" + gz_member(idx_images(3, 20, 20, px), 2 | 4 | 8))
    three = idx_images(2, 10, 10, px[:200])
    put("idx_gz", "three_members_one_empty_images",
        b"\x01" + gz_member(three[:50]) + gz_member(b"") + gz_member(three[50:], 8))
    put("idx_gz", "second_member_too_long_labels",
        b"\x00" + gz_member(idx_labels(3)) + gz_member(b"\x00\x01\x02\x03\x04"))
    put("idx_gz", "dynamic_huffman_images", b"\x01" + gz(idx_images(3, 20, 20, px)))
    # selector bit 1: the target compresses the rest itself
    put("idx_gz", "compress_images", b"\x03" + idx_images(1, 3, 3, bytes(9)))
    put("idx_gz", "compress_huge_labels", b"\x02" + idx_labels(0xFFFFFFFF))


def dataset():
    def ds(limit, images, labels):
        return bytes([limit]) + struct.pack("<H", len(images)) + images + labels
    im = idx_images(3, 2, 2, bytes(range(12)))
    put("dataset", "valid", ds(0, im, idx_labels(3, b"\x00\x01\x09")))
    put("dataset", "valid_limit2", ds(2, im, idx_labels(3, b"\x00\x01\x09")))
    put("dataset", "label_10", ds(0, im, idx_labels(3, b"\x00\x01\x0a")))
    put("dataset", "count_mismatch", ds(0, im, idx_labels(2, b"\x00\x01")))
    put("dataset", "no_images", ds(0, idx_images(0, 2, 2), idx_labels(0)))
    put("dataset", "huge_declared", ds(0, idx_images(60000, 28, 28, b"\1"), idx_labels(60000)))


def checkpoint():
    d = os.path.join(ROOT, "checkpoint")
    for k in range(4):
        with open(os.path.join(d, "valid_kind%d" % k), "rb") as f:
            base = f.read()
        sel, body = base[0], base[1:]
        off_epoch = 8 + 4 + 4 + 16 + 8 * 5 + 8 + 8  # after nparams
        # epoch 2^63 with a correct checksum (selector bit 2 fixes it up too)
        ep = body[:off_epoch] + struct.pack("<Q", 1 << 63) + body[off_epoch + 8:]
        put("checkpoint", "epoch_2p63_kind%d" % k, bytes([sel | 4]) + ep)
        put("checkpoint", "truncated_kind%d" % k, bytes([sel]) + body[:-9])
        put("checkpoint", "other_model_kind%d" % k, bytes([(sel + 1) & 3]) + body)
    for k in range(4):  # version 2 (run record after the parameters)
        with open(os.path.join(d, "valid_v2_kind%d" % k), "rb") as f:
            base = f.read()
        sel, body = base[0], base[1:]
        off_epoch = 8 + 4 + 4 + 16 + 8 * 5 + 8 + 8
        ep = body[:off_epoch] + struct.pack("<Q", 1 << 63) + body[off_epoch + 8:]
        put("checkpoint", "v2_epoch_2p63_kind%d" % k, bytes([sel | 4]) + ep)
    # a record length of 2^32 - 1 (checksum fixed up by the selector)
    body = open(os.path.join(d, "valid_v2_kind2"), "rb").read()[1:]
    n = struct.unpack("<Q", body[80:88])[0]
    at = 104 + 8 * n
    put("checkpoint", "v2_record_4GB", b"\x06" + body[:at] + struct.pack("<I", 0xFFFFFFFF)
        + body[at + 4:])
    body = open(os.path.join(d, "valid_kind2"), "rb").read()[1:]
    off_scale = 8 + 4 + 4 + 16 + 8 * 5
    inf = body[:off_scale] + struct.pack("<d", float("inf")) + body[off_scale + 8:]
    put("checkpoint", "fc_scale_inf", b"\x06" + inf)
    nan = body[:-16] + struct.pack("<d", float("nan")) + body[-8:]
    put("checkpoint", "param_nan", b"\x06" + nan)
    put("checkpoint", "zeros", b"\x00" + b"\0" * 400)


if __name__ == "__main__":
    csv()
    state()
    npy_corpus()
    idx_raw()
    idx_gz()
    dataset()
    checkpoint()
