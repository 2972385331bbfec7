"""TFRecord files and ``tf.train.Example`` records, read without TensorFlow.

Framing (TensorFlow's ``tfrecord`` format), one record after another, little-endian::

    uint64  length
    uint32  masked CRC32C of the 8 length bytes
    bytes   data[length]
    uint32  masked CRC32C of the data

where ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` modulo 2**32. Both CRCs
are checked (CRC32C from ``google-crc32c``, Google's C implementation, Apache-2.0), and a
length is checked against what is left of the file before anything is allocated, so a
corrupt or cut file is one error naming the record and its byte offset, never a huge read.

Records are decoded as ``tf.train.Example`` messages with the ``protobuf`` package. The
message types (``Example``, ``Features``, ``Feature``, ``BytesList``, ``FloatList``,
``Int64List``, with TensorFlow's published field numbers) are described here at run time in
a private descriptor pool, so no generated code and no TensorFlow is needed, and nothing is
registered in protobuf's default pool (where a real TensorFlow would collide). We use
protobuf's parser rather than a hand-written wire decoder because it already handles every
valid encoding (packed or unpacked lists, fields in any order, map entries, unknown fields)
and refuses malformed bytes with one exception; a decoder of our own would have to re-earn
that correctness.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sim.errors import FileFormatError

HEADER = struct.Struct("<QI")  # length, masked CRC of the length
FOOTER = struct.Struct("<I")  # masked CRC of the data
MASK_DELTA = 0xA282EAD8


def crc32c(data: bytes) -> int:
    """The CRC32C (Castagnoli) of ``data``."""
    import google_crc32c

    return int(google_crc32c.value(bytes(data)))


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC32C of ``data``."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


def looks_like_tfrecord(path: str | os.PathLike) -> bool:
    """True when the file starts with a TFRecord header whose length CRC holds (cheap: 12 bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER.size)
    except OSError:
        return False
    if len(head) < HEADER.size:
        return False
    _, crc = HEADER.unpack(head)
    return masked_crc(head[:8]) == crc


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, int, bytes]]:
    """(index, byte offset, data) of every record, one at a time, both CRCs checked."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        index = offset = 0
        while True:
            head = f.read(HEADER.size)
            if not head:
                if index == 0:
                    raise FileFormatError("holds no records (an empty TFRecord file)", path)
                return
            where = f"record {index} (byte {offset})"
            if len(head) < HEADER.size:
                raise FileFormatError(f"truncated: {where} has {len(head)} of its {HEADER.size} header bytes", path)
            length, length_crc = HEADER.unpack(head)
            if masked_crc(head[:8]) != length_crc:
                raise FileFormatError(f"{where}: the CRC of its length does not match (a corrupt file, or not a "
                                      "TFRecord file)", path)
            left = size - offset - HEADER.size
            if length + FOOTER.size > left:
                raise FileFormatError(f"truncated: {where} declares {length} data bytes and a 4-byte CRC but only "
                                      f"{max(left, 0)} bytes follow (an interrupted download or copy?)", path)
            data = f.read(length)
            foot = f.read(FOOTER.size)
            if len(data) < length or len(foot) < FOOTER.size:
                raise FileFormatError(f"truncated: {where} ends early (the file changed while it was read?)", path)
            (data_crc,) = FOOTER.unpack(foot)
            if masked_crc(data) != data_crc:
                raise FileFormatError(f"{where}: the CRC of its {length} data bytes does not match (a corrupt file)",
                                      path)
            yield index, offset, data
            index += 1
            offset += HEADER.size + length + FOOTER.size


_EXAMPLE: Any = None
_PACKAGE = "sim_foreign_tf"


def _example_class() -> Any:
    """The ``tf.train.Example`` message class, built once from descriptors (see the module docstring)."""
    global _EXAMPLE
    if _EXAMPLE is not None:
        return _EXAMPLE
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(name=f"{_PACKAGE}/example.proto", package=_PACKAGE, syntax="proto3")

    def field(msg, name: str, number: int, ftype: int, label: int = F.LABEL_OPTIONAL, type_name: str = "",
              oneof: int | None = None) -> None:
        f = msg.field.add(name=name, number=number, type=ftype, label=label)
        if type_name:
            f.type_name = f".{_PACKAGE}.{type_name}"
        if oneof is not None:
            f.oneof_index = oneof

    # feature.proto: BytesList{repeated bytes value = 1}, FloatList{repeated float value = 1},
    # Int64List{repeated int64 value = 1}, Feature{oneof kind {bytes_list = 1; float_list = 2;
    # int64_list = 3}}, Features{map<string, Feature> feature = 1}; example.proto: Example{Features features = 1}
    for name, ftype in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)):
        field(fd.message_type.add(name=name), "value", 1, ftype, F.LABEL_REPEATED)
    feature = fd.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate(
            (("bytes_list", "BytesList"), ("float_list", "FloatList"), ("int64_list", "Int64List")), start=1):
        field(feature, name, number, F.TYPE_MESSAGE, type_name=type_name, oneof=0)
    features = fd.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    field(entry, "key", 1, F.TYPE_STRING)
    field(entry, "value", 2, F.TYPE_MESSAGE, type_name="Feature")
    field(features, "feature", 1, F.TYPE_MESSAGE, F.LABEL_REPEATED, type_name="Features.FeatureEntry")
    field(fd.message_type.add(name="Example"), "features", 1, F.TYPE_MESSAGE, type_name="Features")

    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    _EXAMPLE = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Example"))
    return _EXAMPLE


def parse_example(data: bytes) -> dict[str, tuple[str, Any]]:
    """Feature name -> (kind, values) of one serialised ``tf.train.Example``: ``("bytes_list",
    [bytes, ...])``, ``("float_list", float32 array)``, ``("int64_list", int64 array)`` or
    ``("empty", None)``. Raises ``ValueError`` when the bytes are not such a message."""
    from google.protobuf.message import DecodeError

    example = _example_class()()
    try:
        example.ParseFromString(data)
    except (DecodeError, RuntimeError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from None
    out: dict[str, tuple[str, Any]] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "bytes_list":
            out[name] = (kind, list(feature.bytes_list.value))
        elif kind == "float_list":
            out[name] = (kind, np.asarray(feature.float_list.value, dtype=np.float32))
        elif kind == "int64_list":
            out[name] = (kind, np.asarray(feature.int64_list.value, dtype=np.int64))
        else:
            out[name] = ("empty", None)
    return out
