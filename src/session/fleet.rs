//! Several targets in one session: `[[target]]` tables, each named and priced, and the `target`
//! key that places each tenant on one of them.
//!
//! ```toml
//! [[target]]
//! name = "gpu-a"
//! emulate = "t4"
//! instance = "aws:g4dn.xlarge"     # or usd_per_hour = 0.526; else the session's [cost]
//!
//! [[tenant]]
//! model = "resnet50"
//! target = "gpu-a"                 # required when there are several targets
//! ```

use std::ops::Range;
use std::path::Path;

use toml::de::DeValue;

use super::parse::{ModelLookup, TARGET_KEYS, choose, cost_of, nonempty, target_of};
use super::spanned::{Doc, Field, Result, Table};
use crate::vocab::spec::{CostSpec, TargetSpec, Transport};

/// More targets than this is a typo or a generated file gone wrong, not a fleet one run drives.
pub const MAX_TARGETS: usize = 64;

/// A target as read from the file, before its tenants are attached.
pub(super) struct ParsedTarget {
    pub name: Option<String>,
    pub target: TargetSpec,
    pub transport: Option<Transport>,
    pub cost: CostSpec,
    /// Where its table starts, for errors about the target as a whole.
    pub span: Range<usize>,
}

impl ParsedTarget {
    /// The single `[target]` of a session (or the default one when there is none).
    pub fn single(
        target: TargetSpec,
        transport: Option<Transport>,
        cost: CostSpec,
        span: Range<usize>,
    ) -> Self {
        ParsedTarget {
            name: None,
            target,
            transport,
            cost,
            span,
        }
    }
}

/// The `[[target]]` tables; a target that names no price takes the session's `[cost]`.
pub(super) fn parse_targets(
    doc: &Doc<'_>,
    f: Field<'_, '_, '_>,
    base: &Path,
    models: &dyn ModelLookup,
    default_cost: &CostSpec,
) -> Result<Vec<ParsedTarget>> {
    let items = f.array("[[target]] tables")?;
    if items.is_empty() {
        return Err(f.fail("expected at least one [[target]] table"));
    }
    if let Some(extra) = items.get(MAX_TARGETS) {
        return Err(doc.error(
            extra.span(),
            &format!("target[{MAX_TARGETS}]"),
            format!(
                "a session drives at most {MAX_TARGETS} targets; this one has {}",
                items.len()
            ),
        ));
    }
    let mut keys: Vec<&'static str> = TARGET_KEYS.to_vec();
    keys.extend(["name", "instance", "usd_per_hour"]);
    let mut targets: Vec<ParsedTarget> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("target[{i}]");
        let field = Field {
            doc,
            key: &key,
            value: item,
        };
        let t = Table::new(doc, key.clone(), field.table("a [[target]] table")?, &keys)?;
        let name_field = t.get("name").ok_or_else(|| {
            doc.error(
                item.span(),
                &t.key("name"),
                "missing: name, such as name = \"gpu-a\" (tenants name their target with it)",
            )
        })?;
        let name = target_name(&name_field)?;
        if let Some(j) = targets.iter().position(|p| p.name.as_deref() == Some(name)) {
            return Err(name_field.fail(format!(
                "duplicate target name '{name}' (target[{j}] has it too)"
            )));
        }
        let (target, transport) = target_of(doc, &t, base, models)?;
        let cost = cost_of(&t, models)?.unwrap_or_else(|| default_cost.clone());
        targets.push(ParsedTarget {
            name: Some(name.to_string()),
            target,
            transport,
            cost,
            span: item.span(),
        });
    }
    Ok(targets)
}

/// A target name: it becomes a Prometheus label value and a column, so plain characters only.
fn target_name<'t>(f: &Field<'_, 't, '_>) -> Result<&'t str> {
    let name = nonempty(f, "a target name such as 'gpu-a'")?;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.len() > 64 || !name.chars().all(plain) {
        return Err(f.fail(format!(
            "expected a target name of letters, digits, '-', '_' and '.' (at most 64), found '{name}'"
        )));
    }
    Ok(name)
}

/// Which target a `[[tenant]]` runs on: the one its `target` names; with a single target the key
/// may be left out (and then names nothing, or that target's own name).
pub(super) fn tenant_target(tenant: Field<'_, '_, '_>, targets: &[ParsedTarget]) -> Result<usize> {
    let DeValue::Table(table) = tenant.value.get_ref() else {
        // parse_tenant reports what the tenant should have been.
        return Ok(0);
    };
    let key = format!("{}.target", tenant.key);
    let Some(value) = table.get("target") else {
        if targets.len() > 1 {
            let names: Vec<&str> = targets.iter().filter_map(|t| t.name.as_deref()).collect();
            return Err(tenant.doc.error(
                tenant.span(),
                &key,
                format!(
                    "missing: target, one of {} (the session has several targets)",
                    names.join(", ")
                ),
            ));
        }
        return Ok(0);
    };
    let field = Field {
        doc: tenant.doc,
        key: &key,
        value,
    };
    let name = nonempty(&field, "a target name such as 'gpu-a'")?;
    let named: Vec<String> = targets.iter().filter_map(|t| t.name.clone()).collect();
    if named.is_empty() {
        return Err(field.fail(
            "a tenant names its target only in a session with [[target]] tables, each with a \
             name; this one has a single [target]",
        ));
    }
    choose(field, "target", name, Some(named))?;
    Ok(targets
        .iter()
        .position(|t| t.name.as_deref() == Some(name))
        .unwrap_or(0))
}
