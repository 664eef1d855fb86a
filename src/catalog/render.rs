//! Plain-text tables for `perseus catalog`.

use std::fmt::Write as _;

use super::{Catalog, MIB};

/// Text columns align left, numeric ones right, so figures line up for comparison.
struct Table {
    header: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            header: columns.iter().map(|c| c.0).collect(),
            numeric: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String], out: &mut String| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                if self.numeric[i] {
                    let _ = write!(text, "{cell:>w$}");
                } else {
                    let _ = write!(text, "{cell:<w$}");
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_string()).collect();
        line(&header, out);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&rule, out);
        for row in &self.rows {
            line(row, out);
        }
    }
}

fn mib(bytes: u64) -> String {
    (bytes / MIB).to_string()
}

fn shapes(tensors: &[super::TensorSpec]) -> String {
    tensors
        .iter()
        .map(|t| {
            let dims: Vec<String> = t.shape.iter().map(i64::to_string).collect();
            format!("{} {} [{}]", t.name, t.datatype, dims.join(","))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every GPU with its figures and their source.
fn gpu_table(catalog: &Catalog, out: &mut String) {
    out.push_str("GPUs\n");
    let mut gpus = Table::new(&[
        ("name", false),
        ("device", false),
        ("memory MiB", true),
        ("context MiB", true),
        ("TDP W", true),
        ("idle W", true),
        ("SM MHz", true),
        ("gamma", true),
        ("source", false),
    ]);
    for g in &catalog.gpus {
        gpus.row(vec![
            g.name.clone(),
            g.display.clone(),
            mib(g.memory_bytes),
            mib(g.context_bytes),
            format!("{:.0}", g.tdp_w),
            format!("{:.1}", g.idle_w),
            g.sm_clock_mhz.to_string(),
            format!("{:.2}", g.gamma),
            g.source.clone(),
        ]);
    }
    gpus.render(out);
}

/// The GPU model's constants per GPU, each with where it comes from.
fn constants_table(catalog: &Catalog, out: &mut String) {
    out.push_str("\nGPU model constants: each with its source, \"fitted to …\" or \"assumed\"\n");
    let mut constants = Table::new(&[
        ("gpu", false),
        ("constant", false),
        ("value", true),
        ("provenance", false),
    ]);
    for g in &catalog.gpus {
        constants.row(vec![
            g.name.clone(),
            "gamma (other models)".into(),
            format!("{:.2}", g.gamma),
            g.gamma_source.clone(),
        ]);
        for p in &g.pair_gamma {
            constants.row(vec![
                g.name.clone(),
                format!("gamma {} + {}", p.a, p.b),
                format!("{:.2}", p.gamma),
                p.source.clone(),
            ]);
        }
        constants.row(vec![
            g.name.clone(),
            format!("host link {}", g.host_link),
            format!("{:.1} GB/s", g.link_bytes_per_s / 1e9),
            format!(
                "PCI-SIG rate × lanes × {} (the share reached is assumed)",
                super::PCIE_EFFICIENCY
            ),
        ]);
        if let Some(of) = &g.slice {
            constants.row(vec![
                g.name.clone(),
                format!("MIG {} of {}", of.profile, of.parent),
                format!("{:.3} of SMs", of.sm_share),
                format!(
                    "{}; isolated from the other slices; beta of each entry × 1/share (derived)",
                    of.source
                ),
            ]);
        }
        constants.row(vec![
            g.name.clone(),
            "max resident batches".into(),
            g.max_resident.to_string(),
            "CUDA_DEVICE_MAX_CONNECTIONS default (CUDA C++ Programming Guide)".into(),
        ]);
    }
    constants.render(out);
}

/// Every model with its tensors.
fn model_table(catalog: &Catalog, out: &mut String) {
    out.push_str("\nModels\n");
    let mut models = Table::new(&[
        ("name", false),
        ("platform", false),
        ("inputs", false),
        ("outputs", false),
        ("description", false),
    ]);
    for m in &catalog.models {
        models.row(vec![
            m.name.clone(),
            m.platform.clone(),
            shapes(&m.inputs),
            shapes(&m.outputs),
            m.description.clone(),
        ]);
    }
    models.render(out);
}

pub(super) fn render(catalog: &Catalog) -> String {
    let mut out = String::new();
    gpu_table(catalog, &mut out);
    constants_table(catalog, &mut out);
    model_table(catalog, &mut out);
    for profile in catalog.profile_names() {
        let _ = writeln!(
            out,
            "\nProfile {profile}: L(b) = alpha + beta·b; * = derived"
        );
        let mut perf = Table::new(&[
            ("model", false),
            ("gpu", false),
            ("prec", false),
            ("alpha ms", true),
            ("beta ms", true),
            ("L(1) ms", true),
            ("peak img/s", true),
            ("max batch", true),
            ("memory MiB", true),
            ("batching", false),
            ("*", false),
            ("source", false),
        ]);
        for p in catalog.profiles.iter().filter(|p| p.profile == profile) {
            let batching = match &p.dynamic_batching {
                None => format!("none ×{}", p.instances),
                Some(b) => format!(
                    "pref {:?} delay {}us ×{}",
                    b.preferred_batch_sizes, b.max_queue_delay_us, p.instances
                ),
            };
            let b = f64::from(p.max_batch);
            perf.row(vec![
                p.model.clone(),
                p.gpu.clone(),
                p.precision.clone(),
                format!("{:.3}", p.alpha_ms),
                format!("{:.4}", p.beta_ms),
                format!("{:.3}", p.alpha_ms + p.beta_ms),
                format!("{:.0}", 1000.0 * b / (p.alpha_ms + p.beta_ms * b)),
                p.max_batch.to_string(),
                mib(p.memory_bytes),
                batching,
                if p.derived { "*" } else { "" }.to_string(),
                p.source.clone(),
            ]);
        }
        perf.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Catalog;

    #[test]
    fn every_table_lists_its_entries_in_aligned_columns() {
        let catalog = Catalog::embedded().unwrap();
        let text = catalog.render_text();
        for g in &catalog.gpus {
            assert!(text.contains(&g.display), "{}", g.display);
        }
        assert!(text.contains("Profile current"));
        assert!(text.contains("Profile perseus2019"));
        assert!(text.contains("input FP32 [3,299,299]"));
        // Every GPU model constant says where it comes from.
        for g in &catalog.gpus {
            assert!(text.contains(&g.gamma_source), "{}", g.name);
            assert!(
                text.contains(&format!("host link {}", g.host_link)),
                "{}",
                g.name
            );
        }
        assert!(text.contains("assumed") && text.contains("fitted to"));
        assert!(text.contains("MIG 1g.10gb of a100-80gb"));
        assert!(text.contains("Profile triton-fp16"));
        // Within the GPU table the source column starts at the same offset on every row.
        let lines: Vec<&str> = text.lines().skip(1).take(catalog.gpus.len() + 2).collect();
        let col = lines[0].find("source").unwrap();
        for (line, g) in lines[2..].iter().zip(&catalog.gpus) {
            assert_eq!(line.find(&g.source), Some(col), "{line}");
        }
    }
}
