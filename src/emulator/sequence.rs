//! Triton's sequence batcher as far as a client can see it: requests carry a correlation ID and
//! start/end flags, a sequence must open with START, and END forgets it. The emulator runs each
//! request of a sequence alone, so it keeps only which sequences are open.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::emulator::status::ServeError;

/// Triton's correlation ID: an unsigned number or a string; 0 and "" mean "not in a sequence".
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum CorrelationId {
    Number(u64),
    Text(String),
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorrelationId::Number(n) => write!(f, "{n}"),
            CorrelationId::Text(s) => f.write_str(s),
        }
    }
}

/// A request's sequence parameters (`sequence_id`, `sequence_start`, `sequence_end`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SequenceFlags {
    pub id: Option<CorrelationId>,
    pub start: bool,
    pub end: bool,
    /// The START control once the request is admitted to its sequence (admission happens once).
    pub admitted: Option<bool>,
}

impl SequenceFlags {
    fn correlation(&self) -> Option<&CorrelationId> {
        match &self.id {
            Some(CorrelationId::Number(0)) | None => None,
            Some(CorrelationId::Text(s)) if s.is_empty() => None,
            Some(id) => Some(id),
        }
    }
}

/// The open sequences of every model that has a sequence batcher.
#[derive(Debug, Default)]
pub(crate) struct Sequences {
    open: Mutex<HashMap<String, HashSet<CorrelationId>>>,
}

impl Sequences {
    fn open(&self) -> MutexGuard<'_, HashMap<String, HashSet<CorrelationId>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Admits one request of a sequence to `model` (batch `batch`), with Triton's checks and wording,
    /// and returns its START control. A START on an open sequence restarts it, as Triton does.
    pub(crate) fn admit(
        &self,
        model: &str,
        batch: u32,
        flags: &SequenceFlags,
    ) -> Result<bool, ServeError> {
        if batch > 1 {
            return Err(ServeError::invalid(format!(
                "inference request to model '{model}' must specify batch-size 1 due to \
                 requirements of sequence batcher"
            )));
        }
        let Some(id) = flags.correlation() else {
            return Err(ServeError::invalid(format!(
                "inference request to model '{model}' must specify a non-zero or non-empty \
                 correlation ID"
            )));
        };
        let mut open = self.open();
        let sequences = open.entry(model.to_string()).or_default();
        if !flags.start && !sequences.contains(id) {
            return Err(ServeError::invalid(format!(
                "inference request for sequence {id} to model '{model}' must specify the START \
                 flag on the first request of the sequence"
            )));
        }
        if flags.end {
            sequences.remove(id);
        } else {
            sequences.insert(id.clone());
        }
        Ok(flags.start)
    }

    /// Drops a model's open sequences (on unload: a reloaded model starts with none).
    pub(crate) fn forget(&self, model: &str) {
        self.open().remove(model);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(id: u64, start: bool, end: bool) -> SequenceFlags {
        SequenceFlags {
            id: Some(CorrelationId::Number(id)),
            start,
            end,
            admitted: None,
        }
    }

    #[test]
    fn a_sequence_opens_with_start_and_closes_with_end() {
        let s = Sequences::default();
        let err = s.admit("m", 1, &flags(7, false, false)).unwrap_err();
        assert!(
            err.message
                .contains("sequence 7 to model 'm' must specify the START flag"),
            "{}",
            err.message
        );
        assert_eq!(s.admit("m", 1, &flags(7, true, false)), Ok(true));
        assert_eq!(s.admit("m", 1, &flags(7, false, false)), Ok(false));
        assert_eq!(s.admit("m", 1, &flags(7, false, true)), Ok(false));
        assert!(s.admit("m", 1, &flags(7, false, false)).is_err(), "ended");
        assert_eq!(
            s.admit("m", 1, &flags(8, true, true)),
            Ok(true),
            "start and end at once"
        );
        assert!(s.admit("m", 1, &flags(8, false, false)).is_err());
    }

    #[test]
    fn triton_refuses_no_id_a_batch_and_forgets_on_unload() {
        let s = Sequences::default();
        for missing in [
            SequenceFlags::default(),
            flags(0, true, false),
            SequenceFlags {
                id: Some(CorrelationId::Text(String::new())),
                start: true,
                ..SequenceFlags::default()
            },
        ] {
            let err = s.admit("m", 1, &missing).unwrap_err();
            assert!(err.message.contains("non-zero or non-empty correlation ID"));
        }
        let err = s.admit("m", 2, &flags(1, true, false)).unwrap_err();
        assert!(err.message.contains("must specify batch-size 1"));
        let text = SequenceFlags {
            id: Some(CorrelationId::Text("abc".into())),
            start: true,
            ..SequenceFlags::default()
        };
        assert_eq!(s.admit("m", 1, &text), Ok(true));
        s.forget("m");
        let again = SequenceFlags {
            start: false,
            ..text
        };
        assert!(s.admit("m", 1, &again).is_err());
    }
}
