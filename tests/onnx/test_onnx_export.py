"""ONNX export judged by onnxruntime: every model exported from Keras 3 `.keras` and tf_keras
`.h5` files runs in onnxruntime and gives what the real library predicts from the original, in
this process, within 1e-4 of the output's magnitude; at opsets 13, 17 and 21."""

from __future__ import annotations

import numpy as np
import pytest

import modelmorph
from helpers import FIXTURES, assert_close_to_recorded, require
from modelmorph.cli import main

pytestmark = pytest.mark.interop

RTOL = 1e-4  # the bound, relative to each output's largest magnitude
OPSETS = [13, 17, 21]
KERAS3_CASES = ["mlp_adam", "seq_cnn_bn", "multi_io_shared", "embed_lstm_bigru", "nested_seq", "mha_ln", "mobilenetv2"]
TF_KERAS_CASES = [*KERAS3_CASES, "tfop_lambda"]


@pytest.fixture(scope="module")
def ort():
    return require("onnxruntime")


def check(path) -> None:
    """The onnx package's own checker, full: types and shapes inferred through the whole graph."""
    require("onnx").checker.check_model(str(path), full_check=True)


def run_onnx(ort, path, inputs: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})


def recorded_inputs(family: str, case: str, model) -> dict:
    io = np.load(FIXTURES / family / f"{case}.io.npz")
    arrays = [io[k] for k in sorted(io.files) if k.startswith("in_")]
    names = [t.name.split(":")[0] for t in model.inputs]
    if case == "multi_io_shared":
        names = ["a", "b"]
    return dict(zip(names, arrays))


def keras_outputs(model, inputs: dict) -> list[np.ndarray]:
    feed = list(inputs.values())[0] if len(inputs) == 1 else inputs
    out = model.predict(feed, verbose=0)
    if isinstance(out, dict):
        return [np.asarray(out[k]) for k in sorted(out)]
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]


def assert_exports_and_runs(ort, source, model, inputs: dict, tmp_path, opset: int = 17, **options):
    out = tmp_path / f"model_{opset}.onnx"
    diagnostics = modelmorph.convert(source, out, options={"opset": opset, **options})
    check(out)
    got = run_onnx(ort, out, inputs)
    want = keras_outputs(model, inputs)
    if len(got) > 1 and isinstance(model.output, dict):  # dict outputs: ONNX keeps Keras' order, compare by name
        got = [g for _, g in sorted(zip([t.name for t in _onnx_outputs(ort, out)], got))]
    assert_close_to_recorded(got, want, rtol=RTOL)
    return out, diagnostics


def _onnx_outputs(ort, path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", KERAS3_CASES)
def test_keras3_archives_export(case, opset, keras3, ort, tmp_path):
    source = FIXTURES / "keras3" / f"{case}.keras"
    model = keras3.saving.load_model(source)
    assert_exports_and_runs(ort, source, model, recorded_inputs("keras3", case, model), tmp_path, opset)


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", TF_KERAS_CASES)
def test_keras2_h5_files_export(case, opset, tf_keras, ort, tmp_path):
    """Keras 2 `.h5` files, several of which Keras 3 cannot load, judged by tf_keras itself."""
    source = FIXTURES / "tf_keras" / f"{case}.h5"
    model = tf_keras.models.load_model(source, compile=False)
    assert_exports_and_runs(ort, source, model, recorded_inputs("tf_keras", case, model), tmp_path, opset)


def test_weights_joined_to_an_architecture_export(keras3, ort, tmp_path):
    source = FIXTURES / "keras3" / "embed_lstm_bigru.weights.h5"
    out = tmp_path / "joined.onnx"
    modelmorph.convert(source, out, arch=FIXTURES / "keras3" / "embed_lstm_bigru.json")
    model = keras3.saving.load_model(FIXTURES / "keras3" / "embed_lstm_bigru.keras")
    inputs = recorded_inputs("keras3", "embed_lstm_bigru", model)
    assert_close_to_recorded(run_onnx(ort, out, inputs), keras_outputs(model, inputs), rtol=RTOL)


def test_a_cnn_pays_one_transpose(keras3, ort, tmp_path):
    source = FIXTURES / "keras3" / "mobilenetv2.keras"
    onnx = require("onnx")
    out = tmp_path / "m.onnx"
    modelmorph.convert(source, out)
    graph = onnx.load(str(out)).graph
    assert sum(node.op_type == "Transpose" for node in graph.node) == 1  # at the input; the output is 2-D
    assert [i.name for i in graph.input] == ["input_layer"] and [o.name for o in graph.output] == ["predictions"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert any(node.name.startswith("Conv1/") for node in graph.node)  # Keras layer names on nodes


def test_mixed_precision_gives_kerass_float16_numbers(tf_keras, ort, tmp_path):
    """A mixed_float16 layer's ops are rounded to float16 one by one: Keras' numbers, not float32's."""
    source = FIXTURES / "tf_keras" / "mixed_precision.h5"
    out = tmp_path / "mp.onnx"
    diagnostics = modelmorph.convert(source, out)
    assert not [d for d in diagnostics if "float16" in d.message]
    model = tf_keras.models.load_model(source, compile=False)
    inputs = recorded_inputs("tf_keras", "mixed_precision", model)
    assert_close_to_recorded(run_onnx(ort, out, inputs), keras_outputs(model, inputs), rtol=1e-5)


def test_external_data_beside_the_model(keras3, ort, tmp_path):
    source = FIXTURES / "keras3" / "seq_cnn_bn.keras"
    model = keras3.saving.load_model(source)
    inputs = recorded_inputs("keras3", "seq_cnn_bn", model)
    out, _ = assert_exports_and_runs(ort, source, model, inputs, tmp_path, external_data="true")
    data = out.with_name(out.name + ".data")
    assert data.stat().st_size >= sum(int(np.prod(w.shape)) for w in model.weights) * 4
    assert out.stat().st_size < 20_000  # the graph only
    out2 = tmp_path / "auto.onnx"
    modelmorph.convert(source, out2, options={"external_data_threshold": "1KB"})  # auto, over the threshold
    assert out2.with_name("auto.onnx.data").exists()
    assert_close_to_recorded(run_onnx(ort, out2, inputs), keras_outputs(model, inputs), rtol=RTOL)


def test_a_lambda_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "l.onnx"
    code = main(["convert", str(FIXTURES / "keras3" / "lambda_layer.keras"), str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5 and [line for line in err if line.startswith("modelmorph: error")] == [err[-1]]
    assert "'lambda' (Lambda)" in err[-1] and "Python code" in err[-1]
    assert list(tmp_path.iterdir()) == []


def test_opsets_outside_the_range_are_usage_errors(tmp_path, capsys):
    code = main(["convert", str(FIXTURES / "keras3" / "mlp_adam.keras"), str(tmp_path / "m.onnx"), "-O", "opset=12"])
    assert code == 2 and "opset must be from 13 to 21" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_optimizer_state_is_reported_lost(tmp_path):
    diagnostics = modelmorph.convert(FIXTURES / "keras3" / "mlp_adam.keras", tmp_path / "m.onnx")
    kinds = {(d.kind, "optimizer" in d.message) for d in diagnostics}
    assert ("lossy", True) in kinds


@pytest.mark.slow
@pytest.mark.parametrize("application", ["ResNet50", "EfficientNetB0"])
def test_keras_applications_export_with_one_transpose(application, keras3, ort, tmp_path):
    """keras.applications (random weights): exact, and the channels-first work costs one Transpose."""
    onnx = require("onnx")
    keras3.utils.set_random_seed(1)
    model = getattr(keras3.applications, application)(weights=None, input_shape=(64, 64, 3), classes=10)
    source = tmp_path / f"{application}.keras"
    model.save(source)
    inputs = {model.layers[0].name: np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3))
              .astype("float32")}
    out, _ = assert_exports_and_runs(ort, source, model, inputs, tmp_path)
    assert sum(node.op_type == "Transpose" for node in onnx.load(str(out)).graph.node) == 1


def _declared_shape(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_layout_nchw_takes_and_gives_channels_first_feature_maps(keras3, ort, tmp_path):
    """-O layout=nchw: the same numbers as the default export, the rank >= 3 float input and output
    transposed (declared so), the 2-D ones as they were."""
    onnx = require("onnx")
    keras3.utils.set_random_seed(11)
    L = keras3.layers
    image, side = keras3.Input((9, 10, 3), name="image"), keras3.Input((5,), name="side")
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(4, 3, padding="same")(image)))
    maps = L.Conv2D(2, 1, name="maps")(h)
    pooled = L.Concatenate()([L.GlobalAveragePooling2D()(h), L.Dense(3)(side)])
    model = keras3.Model([image, side], [maps, L.Dense(3, name="scores")(pooled)])
    source = tmp_path / "cnn.keras"
    model.save(source)
    rng = np.random.default_rng(2)
    inputs = {"image": rng.standard_normal((2, 9, 10, 3)).astype("float32"),
              "side": rng.standard_normal((2, 5)).astype("float32")}
    default, _ = assert_exports_and_runs(ort, source, model, inputs, tmp_path)
    nchw = tmp_path / "nchw.onnx"
    modelmorph.convert(source, nchw, options={"layout": "nchw"})
    check(nchw)
    graph = onnx.load(str(nchw)).graph
    assert [_declared_shape(i) for i in graph.input] == [["batch", 3, 9, 10], ["batch", 5]]
    assert [_declared_shape(o) for o in graph.output] == [["batch", 2, 9, 10], ["batch", 3]]
    got = run_onnx(ort, nchw, {"image": inputs["image"].transpose(0, 3, 1, 2), "side": inputs["side"]})
    got[0] = got[0].transpose(0, 2, 3, 1)
    assert_close_to_recorded(got, run_onnx(ort, default, inputs), rtol=1e-6)
    assert_close_to_recorded(got, keras_outputs(model, inputs), rtol=RTOL)
    assert sum(node.op_type == "Transpose" for node in graph.node) == 0


def test_layout_nchw_mobilenetv2_holds_no_transpose(keras3, ort, tmp_path):
    onnx = require("onnx")
    source = FIXTURES / "keras3" / "mobilenetv2.keras"
    model = keras3.saving.load_model(source)
    inputs = recorded_inputs("keras3", "mobilenetv2", model)
    out = tmp_path / "m.onnx"
    modelmorph.convert(source, out, options={"layout": "nchw"})
    check(out)
    assert sum(node.op_type == "Transpose" for node in onnx.load(str(out)).graph.node) == 0
    got = run_onnx(ort, out, {name: array.transpose(0, 3, 1, 2) for name, array in inputs.items()})
    assert_close_to_recorded(got, keras_outputs(model, inputs), rtol=RTOL)


def test_layout_other_than_nhwc_or_nchw_is_a_usage_error(tmp_path, capsys):
    code = main(["convert", str(FIXTURES / "keras3" / "mlp_adam.keras"), str(tmp_path / "m.onnx"), "-O", "layout=hwcn"])
    assert code == 2 and "layout" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
