//! Triton's logging and trace settings (the `logging` and `trace` extensions): accepted, checked and
//! reported back as Triton does, so tools that set them work. The emulator writes no Triton log and
//! no trace files; what it logs goes through its own `tracing` setup.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use crate::emulator::status::{Code, ServeError};

/// One logging setting's value, in the three kinds Triton's LogSettings carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogValue {
    Bool(bool),
    Uint(u32),
    Text(String),
}

/// Trace settings: each a list of strings, as Triton's TraceSetting carries them.
pub(crate) type TraceSettings = BTreeMap<String, Vec<String>>;

const TRACE_LEVELS: &[&str] = &["OFF", "TIMESTAMPS", "TENSORS"];

fn unsupported(message: &str) -> ServeError {
    ServeError {
        code: Code::Unsupported,
        message: message.into(),
    }
}

#[derive(Debug)]
pub(crate) struct Settings {
    log: Mutex<BTreeMap<String, LogValue>>,
    trace: Mutex<TraceSettings>,
    /// Per-model trace settings that differ from the global ones.
    model_trace: Mutex<HashMap<String, TraceSettings>>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Default for Settings {
    /// Triton's defaults for a server started without logging or tracing flags.
    fn default() -> Settings {
        let log = [
            ("log_file", LogValue::Text(String::new())),
            ("log_info", LogValue::Bool(true)),
            ("log_warning", LogValue::Bool(true)),
            ("log_error", LogValue::Bool(true)),
            ("log_verbose_level", LogValue::Uint(0)),
            ("log_format", LogValue::Text("default".into())),
        ];
        let trace = [
            ("trace_file", vec![]),
            ("trace_level", vec!["OFF".to_string()]),
            ("trace_rate", vec!["1000".to_string()]),
            ("trace_count", vec!["-1".to_string()]),
            ("log_frequency", vec!["0".to_string()]),
            ("trace_mode", vec!["triton".to_string()]),
        ];
        Settings {
            log: Mutex::new(log.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            trace: Mutex::new(trace.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            model_trace: Mutex::new(HashMap::new()),
        }
    }
}

impl Settings {
    pub(crate) fn log(&self) -> BTreeMap<String, LogValue> {
        guard(&self.log).clone()
    }

    /// Applies every change or none, with Triton's checks: the log file cannot be moved over the
    /// network, each setting has its kind, and the format is `default` or `ISO8601`.
    pub(crate) fn update_log(
        &self,
        changes: &[(String, LogValue)],
    ) -> Result<BTreeMap<String, LogValue>, ServeError> {
        let mut log = guard(&self.log);
        let mut next = log.clone();
        for (key, value) in changes {
            let fits = match (key.as_str(), value) {
                ("log_file", _) => {
                    return Err(unsupported(
                        "log file location can not be updated through network protocol",
                    ));
                }
                ("log_info" | "log_warning" | "log_error", LogValue::Bool(_)) => true,
                ("log_verbose_level", LogValue::Uint(_)) => true,
                ("log_format", LogValue::Text(f)) if f == "default" || f == "ISO8601" => true,
                ("log_format", LogValue::Text(f)) => {
                    return Err(ServeError::invalid(format!(
                        "invalid argument for log_format, got: {f}"
                    )));
                }
                ("log_info" | "log_warning" | "log_error", _) => {
                    return Err(ServeError::invalid(format!("expect boolean for '{key}'")));
                }
                ("log_verbose_level", _) => {
                    return Err(ServeError::invalid(format!(
                        "expect unsigned integer for '{key}'"
                    )));
                }
                ("log_format", _) => {
                    return Err(ServeError::invalid(format!("expect string for '{key}'")));
                }
                _ => false,
            };
            if fits {
                next.insert(key.clone(), value.clone());
            }
        }
        *log = next;
        Ok(log.clone())
    }

    /// The trace settings of `model` (its own where set, the global ones otherwise), or the global
    /// ones for an empty name.
    pub(crate) fn trace(&self, model: &str) -> TraceSettings {
        let mut settings = guard(&self.trace).clone();
        if let Some(own) = guard(&self.model_trace).get(model) {
            settings.extend(own.clone());
        }
        settings
    }

    /// Applies trace changes (an empty value clears a model's own setting back to the global one).
    pub(crate) fn update_trace(
        &self,
        model: &str,
        changes: &[(String, Vec<String>)],
    ) -> Result<TraceSettings, ServeError> {
        for (key, values) in changes {
            check_trace(key, values)?;
        }
        {
            let mut global = guard(&self.trace);
            let mut models = guard(&self.model_trace);
            for (key, values) in changes {
                if model.is_empty() {
                    if !values.is_empty() {
                        global.insert(key.clone(), values.clone());
                    }
                } else {
                    let own = models.entry(model.to_string()).or_default();
                    if values.is_empty() {
                        own.remove(key);
                    } else {
                        own.insert(key.clone(), values.clone());
                    }
                }
            }
        }
        Ok(self.trace(model))
    }
}

/// Triton's checks on a trace setting: known keys, known levels, integer counts and rates.
fn check_trace(key: &str, values: &[String]) -> Result<(), ServeError> {
    match key {
        "trace_file" => Err(unsupported(
            "trace file location can not be updated through network protocol",
        )),
        "trace_level" => match values.iter().find(|v| !TRACE_LEVELS.contains(&v.as_str())) {
            Some(bad) => Err(ServeError::invalid(format!(
                "unsupported trace level '{bad}' (expected OFF, TIMESTAMPS or TENSORS)"
            ))),
            None => Ok(()),
        },
        "trace_rate" | "trace_count" | "log_frequency" => {
            match values.iter().find(|v| v.parse::<i64>().is_err()) {
                Some(bad) => Err(ServeError::invalid(format!(
                    "Unable to parse '{key}', got: {bad}"
                ))),
                None if values.len() > 1 => Err(ServeError::invalid(format!(
                    "expect only 1 value for '{key}'"
                ))),
                None => Ok(()),
            }
        }
        "trace_mode" | "trace_config" => Ok(()),
        other => Err(ServeError::invalid(format!(
            "unknown trace setting '{other}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_settings_change_together_or_not_at_all() {
        let s = Settings::default();
        let off = s
            .update_log(&[("log_info".into(), LogValue::Bool(false))])
            .unwrap();
        assert_eq!(off["log_info"], LogValue::Bool(false));
        let err = s
            .update_log(&[
                ("log_warning".into(), LogValue::Bool(false)),
                ("log_verbose_level".into(), LogValue::Bool(true)),
            ])
            .unwrap_err();
        assert!(err.message.contains("log_verbose_level"), "{}", err.message);
        assert_eq!(
            s.log()["log_warning"],
            LogValue::Bool(true),
            "nothing applied"
        );
        let err = s
            .update_log(&[("log_file".into(), LogValue::Text("x".into()))])
            .unwrap_err();
        assert_eq!(err.code, Code::Unsupported);
    }

    #[test]
    fn model_trace_settings_fall_back_to_the_global_ones() {
        let s = Settings::default();
        let level = |v: &str| ("trace_level".to_string(), vec![v.to_string()]);
        s.update_trace("", &[level("TIMESTAMPS")]).unwrap();
        let own = s
            .update_trace("simple", &[("trace_rate".into(), vec!["5".into()])])
            .unwrap();
        assert_eq!(own["trace_rate"], ["5"]);
        assert_eq!(own["trace_level"], ["TIMESTAMPS"], "inherited");
        assert_eq!(s.trace("")["trace_rate"], ["1000"], "global untouched");
        let cleared = s
            .update_trace("simple", &[("trace_rate".into(), vec![])])
            .unwrap();
        assert_eq!(cleared["trace_rate"], ["1000"]);
        assert!(s.update_trace("", &[level("LOUD")]).is_err());
        assert!(
            s.update_trace("", &[("trace_count".into(), vec!["x".into()])])
                .is_err()
        );
    }
}
