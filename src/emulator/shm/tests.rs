use super::*;

/// A shared-memory object of `len` bytes, unlinked when dropped.
struct Object(String);

impl Object {
    fn new(len: u64) -> Object {
        let key = format!(
            "/perseus-test-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        );
        let fd = rustix::shm::open(
            key.as_str(),
            rustix::shm::OFlags::CREATE | rustix::shm::OFlags::EXCL | rustix::shm::OFlags::RDWR,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        rustix::fs::ftruncate(&fd, len).unwrap();
        Object(key)
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        let _ = rustix::shm::unlink(self.0.as_str());
    }
}

fn shm(region: &str, offset: u64, byte_size: u64) -> TensorShm {
    TensorShm {
        region: region.into(),
        offset,
        byte_size,
    }
}

#[test]
fn register_status_unregister_and_triton_errors() {
    let object = Object::new(4096);
    let regions = Regions::default();
    regions.register("a", &object.0, 0, 1024).unwrap();
    regions.register("b", &object.0, 1024, 3072).unwrap();
    let err = regions.register("a", &object.0, 0, 16).unwrap_err();
    assert_eq!(err.code, Code::AlreadyExists);
    assert_eq!(err.message, "shared memory region 'a' already in manager");
    let err = regions.register("c", &object.0, 1024, 3073).unwrap_err();
    assert_eq!(err.code, Code::InvalidArgument);
    assert_eq!(
        err.message,
        "failed to register shared memory region 'c': invalid args"
    );
    let err = regions
        .register("d", "/no-such-perseus-key", 0, 16)
        .unwrap_err();
    assert_eq!(err.code, Code::Internal);
    assert!(err.message.contains("Unable to open shared memory region"));
    let err = regions
        .register("e", "/triton_python_backend_shm_region_x", 0, 16)
        .unwrap_err();
    assert!(err.message.contains("reserved prefix"), "{}", err.message);

    let all = regions.status("").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[1],
        RegionStatus {
            name: "b".into(),
            key: object.0.clone(),
            offset: 1024,
            byte_size: 3072
        }
    );
    let err = regions.status("zz").unwrap_err();
    assert_eq!(err.code, Code::NotFound);
    regions.unregister("a");
    regions.unregister("never-registered");
    assert_eq!(regions.status("").unwrap().len(), 1);
    regions.unregister("");
    assert!(regions.status("").unwrap().is_empty());
}

#[test]
fn windows_are_bounds_checked_and_survive_the_unlinked_name() {
    let object = Object::new(8192);
    let regions = Regions::default();
    regions.register("in", &object.0, 4096, 4096).unwrap();
    // The name goes away at once; the registered region must keep working.
    rustix::shm::unlink(object.0.as_str()).unwrap();

    let err = regions.window(&shm("in", 4096, 1)).unwrap_err();
    assert_eq!(err.message, "Invalid offset for shared memory region: 'in'");
    let err = regions.window(&shm("in", 4000, 97)).unwrap_err();
    assert_eq!(
        err.message,
        "Invalid offset + byte size for shared memory region: 'in'"
    );
    let err = regions.window(&shm("out", 0, 1)).unwrap_err();
    assert_eq!(err.code, Code::NotFound);

    let window = regions.window(&shm("in", 8, 4)).unwrap();
    let mut targets = OutputTargets::default();
    targets.push("OUT".into(), window.clone());
    let mut reply = InferReply {
        model: "m".into(),
        version: "1".into(),
        id: String::new(),
        outputs: vec![crate::emulator::tensors::OutputTensor {
            name: "OUT".into(),
            datatype: "INT32".into(),
            shape: vec![1],
            data: 7i32.to_le_bytes().to_vec(),
        }],
    };
    targets.deliver(&mut reply).unwrap();
    assert!(reply.outputs[0].data.is_empty());
    assert_eq!(&window.read().unwrap()[..], &7i32.to_le_bytes());

    reply.outputs[0].data = vec![0; 5];
    let err = targets.deliver(&mut reply).unwrap_err();
    assert!(
        err.message
            .contains("(4 bytes) should be at least 5 bytes to hold the results"),
        "{}",
        err.message
    );
}

#[test]
fn parameters_need_a_region_and_the_right_types() {
    let p = |choice| InferParameter {
        parameter_choice: Some(choice),
    };
    let mut params = HashMap::new();
    params.insert(
        "shared_memory_offset".to_string(),
        p(ParameterChoice::Int64Param(8)),
    );
    let err = grpc_params("x", &params).unwrap_err();
    assert!(
        err.message.contains("can not be specified without"),
        "{}",
        err.message
    );
    params.insert(
        "shared_memory_region".to_string(),
        p(ParameterChoice::StringParam("r".into())),
    );
    params.insert(
        "shared_memory_byte_size".to_string(),
        p(ParameterChoice::Int64Param(64)),
    );
    assert_eq!(grpc_params("x", &params).unwrap(), Some(shm("r", 8, 64)));
    params.insert(
        "shared_memory_byte_size".to_string(),
        p(ParameterChoice::BoolParam(true)),
    );
    assert!(
        grpc_params("x", &params)
            .unwrap_err()
            .message
            .contains("expected int64_param")
    );
    assert_eq!(grpc_params("x", &HashMap::new()).unwrap(), None);

    let json = serde_json::json!({"shared_memory_region": "r", "shared_memory_byte_size": 4});
    assert_eq!(json_params(Some(&json)).unwrap(), Some(shm("r", 0, 4)));
    let bad = serde_json::json!({"shared_memory_region": 3});
    assert!(json_params(Some(&bad)).is_err());
}

#[test]
fn a_region_in_use_is_unregistered_when_its_last_request_is_done() {
    let object = Object::new(64);
    let regions = Regions::default();
    regions.register("in", &object.0, 0, 64).unwrap();
    regions.register("idle", &object.0, 0, 64).unwrap();
    let first = regions.window(&shm("in", 0, 8)).unwrap();
    let second = first.clone();
    regions.unregister("");
    // Triton keeps a region that requests still hold, listed and usable, and drops an idle one.
    let names: Vec<String> = regions
        .status("")
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["in"]);
    let err = regions.register("in", &object.0, 0, 64).unwrap_err();
    assert_eq!(err.code, Code::AlreadyExists);
    let third = regions.window(&shm("in", 8, 8)).unwrap();
    drop(first);
    drop(third);
    assert_eq!(second.read().unwrap().len(), 8);
    assert_eq!(
        regions.status("").unwrap().len(),
        1,
        "one request still holds it"
    );
    drop(second);
    assert!(regions.status("").unwrap().is_empty());
    assert_eq!(regions.status("in").unwrap_err().code, Code::NotFound);
    // Registered again, the name is an ordinary region: an unregister with no user removes it.
    regions.register("in", &object.0, 0, 64).unwrap();
    let window = regions.window(&shm("in", 0, 8)).unwrap();
    drop(window);
    regions.unregister("in");
    assert!(regions.status("").unwrap().is_empty());
}
