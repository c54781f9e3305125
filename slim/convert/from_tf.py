"""SavedModel -> ONNX fp32 through tf2onnx, from the export's frozen GraphDef when it has one.

tf2onnx keeps several copies of every constant while it converts (the GraphDef, grappler's
copy, the imported tf.Graph, numpy arrays, ONNX tensors, the serialized model): vgg_16's
0.5 GB of weights took it to 9.2 GB.  So the large weights never enter it.  Each float
constant of at least `min_weight_bytes` is taken out of the frozen graph and replaced by a
placeholder of the same dtype and shape; tf2onnx converts the small remaining graph, where
such a placeholder reaches a convolution through the Transpose it inserts for a
non-constant kernel (HWIO -> OIHW); the weights then go back in as initializers, transposed
once in numpy, one at a time, so the Transpose disappears and the file is the one tf2onnx
would have written.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

from zoobuild.errors import UserError
from slim.convert.savedmodel import export_info, find_saved_model, load_serving

MIN_WEIGHT_BYTES = 1 << 20


@contextlib.contextmanager
def _fresh_node_protos():
    """tf2onnx rewrites every node's attributes in place after each optimizer pass; under
    protobuf's upb backend the replaced attributes stay in the message's arena until the
    message dies, so a graph grows by its constants per pass.  Building a fresh NodeProto
    each time lets the old one go."""
    import onnx
    from tf2onnx.graph import Node

    original = Node.update_proto

    def update_proto(self, external_tensor_storage=None):
        old = self._op
        new = onnx.NodeProto(name=old.name, op_type=old.op_type, domain=old.domain, doc_string=old.doc_string)
        new.input.extend(self.input)
        new.output.extend(self.output)
        for attr_name, sub_graph in (self.get_body_graphs() or {}).items():
            self.set_attr(attr_name, sub_graph.make_graph(f"graph for {self.name} {attr_name}",
                                                          external_tensor_storage=external_tensor_storage))
        new.attribute.extend(self.get_onnx_attrs(external_tensor_storage).values())
        self._op = new

    Node.update_proto = update_proto
    try:
        yield
    finally:
        Node.update_proto = original


def strip_weights(graph_def, min_bytes: int = MIN_WEIGHT_BYTES):
    """(a copy of graph_def whose large float constants are placeholders, {node name: array})."""
    import tensorflow as tf

    stripped = tf.compat.v1.GraphDef()
    stripped.versions.CopyFrom(graph_def.versions)
    stripped.library.CopyFrom(graph_def.library)
    weights = {}
    for node in graph_def.node:
        if node.op == "Const":
            tensor = node.attr["value"].tensor
            if tensor.dtype == tf.float32.as_datatype_enum and len(tensor.tensor_content) >= min_bytes:
                weights[node.name] = tf.make_ndarray(tensor)
                ph = stripped.node.add(name=node.name, op="Placeholder", device=node.device)
                ph.attr["dtype"].type = tensor.dtype
                ph.attr["shape"].shape.CopyFrom(tensor.tensor_shape)
                continue
        stripped.node.add().CopyFrom(node)
    return stripped, weights


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, payload_len: int) -> bytes:
    """Tag and length of a length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(payload_len)


_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9


def _write_initializer(f, name: str, arr) -> None:
    """Append one initializer to a serialized ModelProto: a further `graph` record holding
    only it.  Protobuf merges repeated records of a message field (their repeated fields
    concatenate), so the file parses as one graph, and only this tensor is ever in memory."""
    import onnx
    from onnx import helper

    header = onnx.TensorProto(name=name, dims=list(arr.shape),
                              data_type=helper.np_dtype_to_tensor_dtype(arr.dtype)).SerializeToString()
    raw = memoryview(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).cast("B")
    tensor_len = len(header) + len(_field(_TENSOR_RAW_DATA, raw.nbytes)) + raw.nbytes
    init_len = len(_field(_GRAPH_INITIALIZER, tensor_len)) + tensor_len
    f.write(_field(_MODEL_GRAPH, init_len) + _field(_GRAPH_INITIALIZER, tensor_len) + header
            + _field(_TENSOR_RAW_DATA, raw.nbytes))
    f.write(raw)


def save_with_weights(model, weights: dict, out: Path) -> int:
    """Write `model` to `out` with the placeholder inputs named by `weights` turned back into
    initializers, streamed one at a time (`weights` is emptied as it goes).  A placeholder
    read only by a Transpose becomes that Transpose's output, transposed in numpy, and the
    Transpose goes; any other becomes an initializer of its own name.  Returns how many
    were folded."""
    import numpy as np

    from zoobuild.atomic import atomic_open

    graph = model.graph
    consumers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(i)
    plan, drop_nodes = [], []          # (tf name, initializer name, perm or None)
    for tf_name in sorted(weights):
        users = consumers.get(f"{tf_name}:0", [])
        if len(users) == 1 and graph.node[users[0]].op_type == "Transpose":
            node = graph.node[users[0]]
            perm = next(list(a.ints) for a in node.attribute if a.name == "perm")
            plan.append((tf_name, node.output[0], perm))
            drop_nodes.append(users[0])
        else:
            plan.append((tf_name, f"{tf_name}:0", None))
    for i in sorted(drop_nodes, reverse=True):
        del graph.node[i]
    with atomic_open(out, "wb") as f:
        f.write(model.SerializeToString())
        for tf_name, name, perm in plan:
            arr = weights.pop(tf_name)
            if perm is not None:
                arr = np.ascontiguousarray(np.transpose(arr, perm))
            _write_initializer(f, name, np.ascontiguousarray(arr))
            del arr
    return len(drop_nodes)


def _from_frozen(frozen: Path, info: dict, out: Path, *, batch_size: int, opset: int, nchw: bool, hw,
                 min_weight_bytes: int):
    import tensorflow as tf
    import tf2onnx

    graph_def = tf.compat.v1.GraphDef()
    data = frozen.read_bytes()
    graph_def.ParseFromString(data)
    del data
    stripped, weights = strip_weights(graph_def, min_weight_bytes)
    del graph_def                # the weights now live once, in numpy
    placeholders = [f"{n}:0" for n in sorted(weights)]
    outputs = [f"{n}:0" for n in info.get("outputs", ["logits", "probabilities", "classes"])]
    model, _ = tf2onnx.convert.from_graph_def(
        stripped, input_names=["images:0", *placeholders], output_names=outputs, opset=opset,
        shape_override={"images:0": [batch_size, hw[0], hw[1], 3]} if batch_size else None,
        inputs_as_nchw=["images:0"] if nchw else None,
        tensors_to_rename={"images:0": "images", **{o: o[:-2] for o in outputs}})
    del stripped
    _drop_inputs(model, set(placeholders))
    save_with_weights(model, weights, out)


def _drop_inputs(model, names: set) -> None:
    graph = model.graph
    for i in reversed(range(len(graph.input))):
        if graph.input[i].name in names:
            del graph.input[i]


def to_onnx_fp32(export_dir, out: Path, *, batch_size: int, opset: int, nchw: bool, hw,
                 min_weight_bytes: int | None = None, **_):
    import tensorflow as tf
    import tf2onnx

    from slim import precision

    precision.enable_for_eager("fp32")     # an fp32 conversion traces the fp32 graph (see runners)

    # tf2onnx deep-copies the whole graph before each optimizer pass unless told not to
    # (it reads the variable's presence, not its value).
    os.environ.setdefault("TF2ONNX_CATCH_ERRORS", "FALSE")
    info = export_info(export_dir)
    frozen = Path(export_dir) / info["frozen_graph"] if info.get("frozen_graph") else None
    try:
        with _fresh_node_protos():
            if frozen is not None and frozen.exists():
                _from_frozen(frozen, info, Path(out), batch_size=batch_size, opset=opset, nchw=nchw, hw=hw,
                             min_weight_bytes=MIN_WEIGHT_BYTES if min_weight_bytes is None else min_weight_bytes)
            else:
                _, fn = load_serving(find_saved_model(export_dir))
                spec = (tf.TensorSpec([batch_size or None, hw[0], hw[1], 3], tf.float32, name="images"),)
                wrapped = tf.function(lambda images: fn(images=images))
                tf2onnx.convert.from_function(wrapped, input_signature=spec, opset=opset,
                                              inputs_as_nchw=["images"] if nchw else None,
                                              output_path=str(out))
    except UserError:
        raise
    except Exception as err:  # tf2onnx raises plain exceptions for unsupported ops
        raise UserError(f"tf2onnx could not convert {export_dir} (opset {opset}): "
                        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    return out
