//! The outputs of Triton's small example models, computed exactly so that NVIDIA's example clients can
//! check their answers (the CNNs answer with placeholders: the emulator models their time, not their
//! numerics), and Triton's classification extension over any output.

use crate::catalog::Compute;
use crate::emulator::status::ServeError;
use crate::emulator::tensors::{InputTensor, OutputTensor, TensorDesc};

/// Elements of a BYTES tensor as Triton lays them out on the wire: each a 4-byte little-endian
/// length followed by that many bytes. `None` when the bytes do not parse so.
pub(crate) fn split_bytes(data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rest = data;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        if len > tail.len() {
            return None;
        }
        let (element, tail) = tail.split_at(len);
        out.push(element);
        rest = tail;
    }
    Some(out)
}

/// The wire form of BYTES elements (see [`split_bytes`]).
pub(crate) fn join_bytes<'a>(elements: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in elements {
        // An element over 4 GiB cannot come from a request the server accepted.
        out.extend(u32::try_from(e.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// What an example model puts in output `desc`, or `None` for a model answered with a placeholder.
/// `start` is the sequence batcher's START control (whether this request opens its sequence).
pub(crate) fn compute(
    compute: Compute,
    desc: &TensorDesc,
    position: usize,
    inputs: &[InputTensor],
    start: bool,
) -> Result<Option<Vec<u8>>, ServeError> {
    match compute {
        Compute::Placeholder | Compute::Repeat => Ok(None),
        Compute::AddSub => add_sub(&desc.name, inputs),
        Compute::Identity => Ok(inputs.get(position).map(|t| t.data.to_vec())),
        Compute::Sequence => {
            let Some(input) = inputs.first() else {
                return Ok(None);
            };
            // READY is always true here: the emulator runs each request alone, so no batch slot idles.
            let add = i32::from(start);
            Ok(Some(
                words4(&input.data)
                    .flat_map(|w| i32::from_le_bytes(w).wrapping_add(add).to_le_bytes())
                    .collect(),
            ))
        }
    }
}

fn words4(data: &[u8]) -> impl Iterator<Item = [u8; 4]> + '_ {
    data.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]])
}

/// Triton's `simple` family: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 − INPUT1, wrapping, in the
/// inputs' datatype; `simple_string` reads and writes its numbers as decimal strings.
fn add_sub(output: &str, inputs: &[InputTensor]) -> Result<Option<Vec<u8>>, ServeError> {
    let find = |name: &str| inputs.iter().find(|t| t.name == name);
    let (Some(a), Some(b)) = (find("INPUT0"), find("INPUT1")) else {
        return Ok(None);
    };
    let subtract = match output {
        "OUTPUT0" => false,
        "OUTPUT1" => true,
        _ => return Ok(None),
    };
    let data = match a.datatype.as_str() {
        "INT32" => words4(&a.data)
            .zip(words4(&b.data))
            .flat_map(|(x, y)| {
                let (x, y) = (i32::from_le_bytes(x), i32::from_le_bytes(y));
                let r = if subtract {
                    x.wrapping_sub(y)
                } else {
                    x.wrapping_add(y)
                };
                r.to_le_bytes()
            })
            .collect(),
        "INT8" => a
            .data
            .iter()
            .zip(b.data.iter())
            .map(|(&x, &y)| {
                let (x, y) = (x as i8, y as i8);
                (if subtract {
                    x.wrapping_sub(y)
                } else {
                    x.wrapping_add(y)
                }) as u8
            })
            .collect(),
        "BYTES" => {
            let (xs, ys) = (numbers(a)?, numbers(b)?);
            let texts: Vec<String> = xs
                .iter()
                .zip(&ys)
                .map(|(&x, &y)| {
                    if subtract {
                        x.wrapping_sub(y)
                    } else {
                        x.wrapping_add(y)
                    }
                })
                .map(|r| r.to_string())
                .collect();
            join_bytes(texts.iter().map(String::as_bytes))
        }
        _ => return Ok(None),
    };
    Ok(Some(data))
}

/// A BYTES input's elements read as INT32 decimal numbers, as `simple_string` casts them.
fn numbers(t: &InputTensor) -> Result<Vec<i32>, ServeError> {
    let elements = split_bytes(&t.data).unwrap_or_default();
    elements
        .into_iter()
        .map(|e| {
            let text = String::from_utf8_lossy(e);
            text.trim().parse::<i32>().map_err(|_| {
                ServeError::invalid(format!(
                    "unable to convert '{text}' of input '{}' to INT32",
                    t.name
                ))
            })
        })
        .collect()
}

/// One response of the decoupled `repeat_int32`: the outputs asked for, sent `delay_ms` after the
/// previous one.
#[derive(Debug)]
pub(crate) struct Repeated {
    pub delay_ms: u32,
    pub outputs: Vec<OutputTensor>,
}

/// `repeat_int32`'s responses: for each element i of IN, after DELAY[i] ms, OUT = [IN[i]] and
/// IDX = [i]; then WAIT ms before the request completes (returned second).
pub(crate) fn repeat(
    inputs: &[InputTensor],
    requested: &[String],
) -> Result<(Vec<Repeated>, u32), ServeError> {
    let values = |name: &str| -> Vec<[u8; 4]> {
        inputs
            .iter()
            .find(|t| t.name == name)
            .map(|t| words4(&t.data).collect())
            .unwrap_or_default()
    };
    let (ins, delays, wait) = (values("IN"), values("DELAY"), values("WAIT"));
    if ins.len() != delays.len() {
        return Err(ServeError::invalid(format!(
            "expected IN and DELAY shape to match, got [{}] and [{}]",
            ins.len(),
            delays.len()
        )));
    }
    let wants = |name: &str| requested.is_empty() || requested.iter().any(|r| r == name);
    let tensor = |name: &str, datatype: &str, word: [u8; 4]| OutputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape: vec![1],
        data: word.to_vec(),
    };
    let parts = ins
        .iter()
        .zip(&delays)
        .enumerate()
        .map(|(i, (&value, &delay))| {
            let mut outputs = Vec::new();
            if wants("OUT") {
                outputs.push(tensor("OUT", "INT32", value));
            }
            if wants("IDX") {
                let index = u32::try_from(i).unwrap_or(u32::MAX);
                outputs.push(tensor("IDX", "UINT32", index.to_le_bytes()));
            }
            Repeated {
                delay_ms: u32::from_le_bytes(delay),
                outputs,
            }
        })
        .collect();
    let wait_ms = wait.first().map_or(0, |&w| u32::from_le_bytes(w));
    Ok((parts, wait_ms))
}

/// Triton's classification extension: the top `count` classes of each batch element of a numeric
/// output, highest score first (ties in index order), as BYTES "score:index[:label]" strings.
pub(crate) fn classify(
    output: &OutputTensor,
    batched: bool,
    count: u32,
    labels: Option<&[String]>,
) -> Result<OutputTensor, ServeError> {
    let scores = scores(output).ok_or_else(|| {
        ServeError::invalid(format!(
            "class result not available for output '{}' due to unsupported type '{}'",
            output.name, output.datatype
        ))
    })?;
    let images = if batched {
        output.shape.first().map_or(1, |&b| b.max(1) as usize)
    } else {
        1
    };
    let per_image = scores.len() / images.max(1);
    let k = (count as usize).min(per_image);
    let mut texts = Vec::with_capacity(images * k);
    for image in scores.chunks(per_image.max(1)).take(images) {
        let mut order: Vec<usize> = (0..image.len()).collect();
        order.sort_by(|&i, &j| image[j].total_cmp(&image[i]).then(i.cmp(&j)));
        for &index in order.iter().take(k) {
            let mut text = format!("{:.6}:{index}", image[index]);
            if let Some(label) = labels.and_then(|l| l.get(index)) {
                text.push(':');
                text.push_str(label);
            }
            texts.push(text);
        }
    }
    let shape = if batched {
        vec![images as i64, k as i64]
    } else {
        vec![k as i64]
    };
    Ok(OutputTensor {
        name: output.name.clone(),
        datatype: "BYTES".into(),
        shape,
        data: join_bytes(texts.iter().map(String::as_bytes)),
    })
}

fn scores(output: &OutputTensor) -> Option<Vec<f64>> {
    let d = &output.data;
    Some(match output.datatype.as_str() {
        "FP32" => words4(d)
            .map(|w| f64::from(f32::from_le_bytes(w)))
            .collect(),
        "INT32" => words4(d)
            .map(|w| f64::from(i32::from_le_bytes(w)))
            .collect(),
        "UINT32" => words4(d)
            .map(|w| f64::from(u32::from_le_bytes(w)))
            .collect(),
        "INT8" => d.iter().map(|&b| f64::from(b as i8)).collect(),
        "UINT8" => d.iter().map(|&b| f64::from(b)).collect(),
        "FP64" => d
            .chunks_exact(8)
            .map(|c| {
                let mut w = [0; 8];
                w.copy_from_slice(c);
                f64::from_le_bytes(w)
            })
            .collect(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_input(name: &str, texts: &[&str]) -> InputTensor {
        InputTensor {
            name: name.into(),
            datatype: "BYTES".into(),
            shape: vec![1, texts.len() as i64],
            data: join_bytes(texts.iter().map(|t| t.as_bytes())).into(),
        }
    }

    fn desc(name: &str) -> TensorDesc {
        TensorDesc {
            name: name.into(),
            datatype: "BYTES".into(),
            shape: vec![16],
            format: None,
        }
    }

    #[test]
    fn bytes_elements_round_trip_and_truncation_is_refused() {
        let wire = join_bytes([b"ab".as_slice(), b"", b"xyz"]);
        assert_eq!(wire.len(), 3 * 4 + 5);
        assert_eq!(
            split_bytes(&wire).unwrap(),
            vec![b"ab".as_slice(), b"", b"xyz"]
        );
        assert!(split_bytes(&wire[..wire.len() - 1]).is_none());
        assert!(split_bytes(&[1, 0]).is_none());
    }

    #[test]
    fn simple_string_adds_and_subtracts_numbers_written_as_strings() {
        let inputs = [
            bytes_input("INPUT0", &["1", "20", "-3"]),
            bytes_input("INPUT1", &["2", "5", "4"]),
        ];
        let sum = compute(Compute::AddSub, &desc("OUTPUT0"), 0, &inputs, false)
            .unwrap()
            .unwrap();
        assert_eq!(
            split_bytes(&sum).unwrap(),
            vec![b"3".as_slice(), b"25", b"1"]
        );
        let diff = compute(Compute::AddSub, &desc("OUTPUT1"), 1, &inputs, false)
            .unwrap()
            .unwrap();
        assert_eq!(
            split_bytes(&diff).unwrap(),
            vec![b"-1".as_slice(), b"15", b"-7"]
        );
        let bad = [bytes_input("INPUT0", &["x"]), bytes_input("INPUT1", &["1"])];
        let err = compute(Compute::AddSub, &desc("OUTPUT0"), 0, &bad, false).unwrap_err();
        assert!(
            err.message.contains("'x' of input 'INPUT0'"),
            "{}",
            err.message
        );
    }

    #[test]
    fn the_sequence_model_adds_start_to_its_input() {
        let input = InputTensor {
            name: "INPUT".into(),
            datatype: "INT32".into(),
            shape: vec![1, 1],
            data: 41i32.to_le_bytes().to_vec().into(),
        };
        let out = |start| {
            compute(
                Compute::Sequence,
                &desc("OUTPUT"),
                0,
                std::slice::from_ref(&input),
                start,
            )
            .unwrap()
            .unwrap()
        };
        assert_eq!(out(true), 42i32.to_le_bytes());
        assert_eq!(out(false), 41i32.to_le_bytes());
    }

    #[test]
    fn repeat_answers_each_element_after_its_delay() {
        let int = |name: &str, datatype: &str, values: &[u32]| InputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape: vec![values.len() as i64],
            data: values
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        };
        let inputs = [
            int("IN", "INT32", &[100, 101, 102]),
            int("DELAY", "UINT32", &[5, 0, 7]),
            int("WAIT", "UINT32", &[9]),
        ];
        let (parts, wait) = repeat(&inputs, &["OUT".into()]).unwrap();
        assert_eq!(wait, 9);
        assert_eq!(
            parts.iter().map(|p| p.delay_ms).collect::<Vec<_>>(),
            [5, 0, 7]
        );
        assert!(
            parts
                .iter()
                .all(|p| p.outputs.len() == 1 && p.outputs[0].name == "OUT")
        );
        assert_eq!(parts[2].outputs[0].data, 102i32.to_le_bytes());
        let (all, _) = repeat(&inputs, &[]).unwrap();
        assert_eq!(
            all[1].outputs[1].data,
            1u32.to_le_bytes(),
            "IDX counts from 0"
        );
        let short = [
            inputs[0].clone(),
            int("DELAY", "UINT32", &[1]),
            inputs[2].clone(),
        ];
        assert!(
            repeat(&short, &[])
                .unwrap_err()
                .message
                .contains("IN and DELAY")
        );
    }

    #[test]
    fn classification_ranks_scores_and_names_labels() {
        let scores: Vec<u8> = [0.1f32, 0.7, 0.2, 0.7, 0.0, 0.9]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let output = OutputTensor {
            name: "probs".into(),
            datatype: "FP32".into(),
            shape: vec![2, 3],
            data: scores,
        };
        let labels = vec!["cat".to_string(), "dog".into(), "eel".into()];
        let top = classify(&output, true, 2, Some(&labels)).unwrap();
        assert_eq!(top.shape, vec![2, 2]);
        assert_eq!(top.datatype, "BYTES");
        let texts: Vec<String> = split_bytes(&top.data)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.to_vec()).unwrap())
            .collect();
        assert_eq!(
            texts,
            [
                "0.700000:1:dog",
                "0.200000:2:eel",
                "0.900000:2:eel",
                "0.700000:0:cat"
            ]
        );
        let unlabelled = classify(&output, true, 9, None).unwrap();
        assert_eq!(
            unlabelled.shape,
            vec![2, 3],
            "the count is capped at the classes"
        );
    }
}
