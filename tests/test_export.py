"""Bundles, on the CPU: what ``kernelop export`` writes (schemas, plans that read back equal,
CUBINs and PTX per instantiation and architecture), and what it refuses."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import kernelop as ttk
from kernelop.export.bundle import export_bundle, kernels_for, read_manifest
from kernelop.plan.serialize import plan_from_data
from written_kernels import add_bias_spec, axpby_spec

REPO = Path(__file__).resolve().parents[1]


def test_a_bundle_holds_schema_plan_and_a_binary_per_instantiation_and_arch(op_name, register, tmp_path):
    axpby, add_bias = op_name("axpby"), op_name("add_bias")
    register(axpby, axpby_spec())
    register(add_bias, add_bias_spec())
    export_bundle(tmp_path, [axpby, add_bias], ["sm_80", "sm_90"])
    manifest = read_manifest(tmp_path)
    assert manifest["archs"] == ["sm_80", "sm_90"] and [e["name"] for e in manifest["ops"]] == [axpby, add_bias]
    entries = {e["name"]: e for e in manifest["ops"]}
    for name, entry in entries.items():
        registration = ttk.registered_ops()[name]
        assert entry["schema"] == registration.schema
        assert plan_from_data(entry["plan"]) == registration.plan
    templated = entries[axpby]["kernels"]
    assert sorted((k["arch"], tuple(k["dtypes"])) for k in templated) == sorted(
        (arch, (dtype,)) for arch in ("sm_80", "sm_90") for dtype in ("float32", "float16", "bfloat16", "float64"))
    assert {k["kernel_name"] for k in templated} == {f"axpby<{t}, 4>" for t in ("float", "__half", "__nv_bfloat16", "double")}
    for kernel in templated + entries[add_bias]["kernels"]:
        assert (tmp_path / kernel["cubin"]).read_bytes().startswith(b"\x7fELF")
        assert f".entry {kernel['symbol']}" in (tmp_path / kernel["ptx"]).read_text().replace("\t", " ")
        assert kernels_for(entries[axpby] if kernel in templated else entries[add_bias], kernel["arch"])


def test_a_bundle_for_another_architecture_is_refused_naming_both(op_name, register, tmp_path):
    name = op_name("axpby")
    register(name, axpby_spec())
    export_bundle(tmp_path, [name], ["sm_80"])
    (entry,) = read_manifest(tmp_path)["ops"]
    with pytest.raises(ValueError, match=re.escape(f"kernelop.bundle({name}): built for sm_80, but this GPU is sm_90; export it again with --arch sm_90")):
        kernels_for(entry, "sm_90")


def test_what_cannot_be_exported_is_refused(op_name, register, relu_spec, tmp_path):
    name = op_name("eager")
    register(name, relu_spec(), eager_fn=lambda x: x)
    with pytest.raises(ValueError, match=re.escape(f"kernelop.export_bundle({name}): only ops kernelop launches from their plan can be exported")):
        export_bundle(tmp_path, [name], ["sm_90"])
    with pytest.raises(ValueError, match=r"ops \['nope::nothing'\] were not registered by kernelop in this process"):
        export_bundle(tmp_path, ["nope::nothing"], ["sm_90"])
    with pytest.raises(ValueError, match=r"archs\[0\] must look like 'sm_90'"):
        export_bundle(tmp_path, [name], ["hopper"])
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(ValueError, match="expected a bundle of format 1 \\(got 99\\)"):
        read_manifest(tmp_path)


def test_kernelop_export_runs_a_file_and_writes_what_it_registered(tmp_path):
    script = tmp_path / "model_ops.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
        "import kernelop as ttk\n"
        "from written_kernels import add_bias_spec\n"
        "ttk.cuda_kernel_op('exportcli::add_bias', add_bias_spec())\n"
    )
    out = tmp_path / "bundle"
    result = subprocess.run([sys.executable, "-m", "kernelop", "export", str(script), "--out", str(out), "--arch", "sm_90"],
                            capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO / "src"), "KERNELOP_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert "exported 1 ops" in result.stdout
    (entry,) = read_manifest(out)["ops"]
    assert entry["name"] == "exportcli::add_bias" and entry["schema"].startswith("(Tensor(a0!) x, Tensor? bias")


def test_a_manifest_pointing_outside_its_bundle_is_refused(op_name, register, tmp_path):
    name = op_name("axpby")
    register(name, axpby_spec())
    export_bundle(tmp_path, [name], ["sm_90"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["ops"][0]["kernels"][0]["cubin"] = "../../etc/passwd"
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=re.escape(f"op {name}: cubin path '../../etc/passwd' is not a file of the bundle's kernels/ folder")):
        read_manifest(tmp_path)
    del manifest["ops"][0]["kernels"][0]["symbol"]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=re.escape(f"op {name}: a kernel entry lacks one of")):
        read_manifest(tmp_path)
