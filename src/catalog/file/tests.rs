use super::super::Catalog;
use super::CatalogError;

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn user_entries_replace_and_extend_the_embedded_ones() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "gpus.toml",
        r#"
[[gpu]]
name = "T4"
display = "Tesla T4 (tuned)"
memory_mib = 15000
tdp_w = 70.0
idle_w = 9.0
context_mib = 300
sm_clock_mhz = 1590
gamma = 0.2
gamma_source = "assumed"
host_link = "pcie3x16"
max_resident = 8
source = "mine"

[[gpu]]
name = "rtx4090"
display = "GeForce RTX 4090"
memory_mib = 24564
tdp_w = 450.0
idle_w = 20.0
context_mib = 400
sm_clock_mhz = 2520
gamma = 0.1
gamma_source = "assumed"
host_link = "pcie4x16"
max_resident = 8
source = "mine"
"#,
    );
    write(
        dir.path(),
        "profiles.toml",
        r#"
[[perf]]
model = "resnet50"
gpu = "rtx4090"
precision = "FP16"
alpha_ms = 0.5
beta_ms = 0.1
max_batch = 64
memory_mib = 900
derived = true
source = "mine"
"#,
    );
    let embedded = Catalog::embedded().unwrap();
    let merged = Catalog::load(Some(dir.path())).unwrap();
    assert_eq!(merged.gpus.len(), embedded.gpus.len() + 1);
    assert_eq!(merged.gpu("t4").unwrap().display, "Tesla T4 (tuned)");
    let p = merged.perf("resnet50", "rtx4090", None).unwrap();
    assert_eq!(p.memory_bytes, 900 * 1024 * 1024);
    assert_eq!(merged.models, embedded.models);
}

#[test]
fn bad_files_name_the_file_and_the_key() {
    let cases = [
        ("gpus.toml", "[[gpu]]\nname = \"x\"\nbogus = 1\n", "bogus"),
        (
            "profiles.toml",
            "[[perf]]\nmodel = \"resnet50\"\ngpu = \"t4\"\nprecision = \"INT8\"\nalpha_ms = 1.0\nbeta_ms = -0.1\nmax_batch = 8\nderived = true\nsource = \"x\"\n",
            "beta_ms",
        ),
        (
            "profiles.toml",
            "[[perf]]\nmodel = \"nosuch\"\ngpu = \"t4\"\nprecision = \"INT8\"\nalpha_ms = 1.0\nbeta_ms = 0.1\nmax_batch = 8\nderived = true\nsource = \"x\"\n",
            "model",
        ),
        (
            "models.toml",
            "[[model]]\nname = \"m\"\nplatform = \"p\"\ndescription = \"d\"\nparams_millions = 1.0\nactivation_mb_per_image = 1.0\ninput = [{ name = \"i\", datatype = \"FLOAT\", shape = [3] }]\noutput = [{ name = \"o\", datatype = \"FP32\", shape = [1] }]\n",
            "datatype",
        ),
    ];
    for (name, text, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), name, text);
        let err = Catalog::load(Some(dir.path())).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(name), "{msg}");
        assert!(msg.contains(key), "{msg}");
        assert!(matches!(
            err,
            CatalogError::Parse { .. } | CatalogError::Invalid { .. }
        ));
    }
}

#[test]
fn a_missing_directory_overrides_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let merged = Catalog::load(Some(&dir.path().join("absent"))).unwrap();
    assert_eq!(merged, Catalog::embedded().unwrap());
}
