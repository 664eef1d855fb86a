//! Compiles Triton's protocol with protox (pure Rust), so a fresh clone builds with no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["grpc_service.proto", "model_config.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // Tensor payloads are the bulk of every message: keep them as zero-copy `Bytes`.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .bytes(".inference.InferTensorContents.bytes_contents")
        // RPCs the emulator does not serve (shared memory, tracing) answer UNIMPLEMENTED as Triton
        // builds without those features do.
        .generate_default_stubs(true)
        .compile_fds(fds)?;
    Ok(())
}
