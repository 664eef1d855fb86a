"""The descriptor check must catch each kind of incompatibility, not only pass on today's files."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
PROTO_DIR = HERE.parents[1] / "proto"
CHECK = HERE / "check_descriptors.py"


def run_check(proto_dir: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), "--proto-dir", str(proto_dir)],
                          capture_output=True, text=True, check=False)


def mutated(tmp_path: pathlib.Path, file: str, old: str, new: str) -> pathlib.Path:
    for proto in PROTO_DIR.glob("*.proto"):
        shutil.copy(proto, tmp_path / proto.name)
    target = tmp_path / file
    text = target.read_text()
    assert old in text, f"{old!r} is not in {file}: update this test with the proto"
    target.write_text(text.replace(old, new, 1))
    return tmp_path


def test_our_protos_match_triton() -> None:
    result = run_check(PROTO_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "differences: 0" in result.stdout


@pytest.mark.parametrize(("file", "old", "new", "reported"), [
    ("grpc_service.proto", "uint64 batch_size = 1;", "uint32 batch_size = 1;",
     ".inference.InferBatchStatistics.batch_size: type is 'TYPE_UINT32'"),
    ("grpc_service.proto", "int64 device_id = 3;", "int64 device_id = 9;",
     ".inference.CudaSharedMemoryRegisterRequest.device_id: number is 9"),
    ("grpc_service.proto", "repeated bytes raw_input_contents = 7;", "bytes raw_input_contents = 7;",
     ".inference.ModelInferRequest.raw_input_contents: label is 'LABEL_OPTIONAL'"),
    ("grpc_service.proto", "map<string, InferParameter> parameters = 4;\n  repeated InferOutputTensor",
     "map<string, InferTensorContents> parameters = 4;\n  repeated InferOutputTensor",
     ".inference.ModelInferResponse.ParametersEntry.value: type_name is '.inference.InferTensorContents'"),
    ("model_config.proto", "  bool passive = 7;", "",
     ".inference.ModelInstanceGroup.passive: missing"),
    ("model_config.proto", "TYPE_BF16 = 14;", "TYPE_BF16 = 15;",
     "enum .inference.DataType.TYPE_BF16: number is 15"),
    ("model_config.proto", "    ModelEnsembling ensemble_scheduling = 15;\n  }",
     "  }\n  ModelEnsembling ensemble_scheduling = 15;",
     ".inference.ModelConfig.ensemble_scheduling: oneof is None"),
    ("grpc_service.proto", "rpc ModelStreamInfer(stream ModelInferRequest)",
     "rpc ModelStreamInfer(ModelInferRequest)",
     "rpc .inference.GRPCInferenceService/ModelStreamInfer: client_streaming is False"),
    ("grpc_service.proto", "  rpc LogSettings(LogSettingsRequest) returns (LogSettingsResponse) {}\n", "",
     "missing  rpc .inference.GRPCInferenceService/LogSettings"),
    ("grpc_service.proto", "message ServerLiveRequest {}", "message ServerLiveRequest { bool extra = 1; }",
     ".inference.ServerLiveRequest.extra: not in Triton's descriptor"),
])
def test_each_incompatibility_is_reported(tmp_path: pathlib.Path, file: str, old: str, new: str,
                                          reported: str) -> None:
    result = run_check(mutated(tmp_path, file, old, new))
    assert result.returncode == 1, result.stdout + result.stderr
    assert reported in result.stdout, result.stdout
