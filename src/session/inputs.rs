//! A tenant's `inputs`: the tensors to send when the server's metadata does not list them (a
//! non-Triton KServe-v2 server), checked at parse time like every other key.

use super::spanned::{Doc, Field, Result, Table, did_you_mean};
use crate::vocab::datatype::element_size;
use crate::vocab::spec::DeclaredInput;

/// Dimensions one declared input may have; far beyond any model, it keeps a typo from asking for
/// an absurd tensor.
const MAX_DIMS: usize = 8;
const MAX_DIM: u64 = 1 << 24;

/// Datatypes Perseus can fill (every fixed-size Triton type), named in errors.
const DATATYPES: &[&str] = &[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
    "BF16", "FP32", "FP64",
];

const EXAMPLE: &str = "an array such as [{ name = \"predict\", datatype = \"FP32\", shape = [4] }]";

/// Parses `inputs = [{ name, datatype, shape }, …]`.
pub(super) fn parse_inputs(doc: &Doc<'_>, f: Field<'_, '_, '_>) -> Result<Vec<DeclaredInput>> {
    let items = f.array(EXAMPLE)?;
    if items.is_empty() {
        return Err(f.fail(format!("expected at least one input: {EXAMPLE}")));
    }
    let mut inputs: Vec<DeclaredInput> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("{}[{i}]", f.key);
        let elem = Field {
            doc,
            key: &key,
            value: item,
        };
        let input = parse_input(doc, &elem)?;
        if inputs.iter().any(|d| d.name == input.name) {
            return Err(elem.fail(format!("input '{}' is declared twice", input.name)));
        }
        inputs.push(input);
    }
    Ok(inputs)
}

fn parse_input(doc: &Doc<'_>, f: &Field<'_, '_, '_>) -> Result<DeclaredInput> {
    let t = Table::new(
        doc,
        f.key.to_string(),
        f.table("a table such as { name = \"predict\", datatype = \"FP32\", shape = [4] }")?,
        &["name", "datatype", "shape"],
    )?;
    let missing =
        |key: &str, what: &str| doc.error(f.span(), &t.key(key), format!("missing: {what}"));
    let name_field = t
        .get("name")
        .ok_or_else(|| missing("name", "expected the input tensor's name"))?;
    let name = name_field
        .str("the input tensor's name")?
        .trim()
        .to_string();
    if name.is_empty() {
        return Err(name_field.fail("expected a non-empty input name"));
    }
    let dt_field = t
        .get("datatype")
        .ok_or_else(|| missing("datatype", "expected a datatype such as \"FP32\""))?;
    let datatype = dt_field.str("a datatype such as \"FP32\"")?.to_string();
    if element_size(&datatype).is_none() {
        let hint = did_you_mean(&datatype.to_uppercase(), DATATYPES.iter().copied())
            .map_or(String::new(), |s| format!(" (did you mean '{s}'?)"));
        let why = if datatype == "BYTES" {
            "BYTES has no fixed size, so Perseus cannot generate it".to_string()
        } else {
            format!("unknown datatype '{datatype}'{hint}")
        };
        return Err(dt_field.fail(format!("{why}; expected one of {}", DATATYPES.join(", "))));
    }
    let shape_field = t.get("shape").ok_or_else(|| {
        missing(
            "shape",
            "expected the dimensions of one item, such as [4] (the batch is added in front)",
        )
    })?;
    let dims = shape_field.array("the dimensions of one item, such as [4]")?;
    if dims.len() > MAX_DIMS {
        return Err(shape_field.fail(format!(
            "at most {MAX_DIMS} dimensions, found {}",
            dims.len()
        )));
    }
    let mut shape = Vec::with_capacity(dims.len());
    for (j, d) in dims.iter().enumerate() {
        let key = format!("{}[{j}]", shape_field.key);
        let dim = Field {
            doc,
            key: &key,
            value: d,
        };
        shape.push(dim.integer("a dimension", 1, MAX_DIM)? as i64);
    }
    Ok(DeclaredInput {
        name,
        datatype,
        shape,
    })
}
