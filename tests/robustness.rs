//! Fuzz-style property tests: arbitrary bytes and mutated TOML into the session parser, damaged
//! byte streams into the recording reader. Errors are fine; panics, errors pointing outside the
//! file, and accepted sessions that do not save and load back unchanged are not.

mod common;

use std::io::Cursor;
use std::path::Path;

use perseus::session::{Recorder, StaticModels, parse_recording, parse_session, to_toml};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const CASES: usize = 3_000;

fn catalog() -> StaticModels {
    [
        ("resnet50", 128),
        ("mobilenet_v2", 128),
        ("inception_v3", 128),
        ("vgg16", 128),
        ("simple", 8),
    ]
    .into_iter()
    .collect()
}

/// Seeds: every shipped session plus the valid and invalid cases.
fn corpus() -> Vec<String> {
    let mut texts = Vec::new();
    for dir in ["sessions", "tests/sessions/valid", "tests/sessions/invalid"] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "toml") {
                texts.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }
    texts
}

const TOKENS: &[&str] = &[
    "=",
    "\"",
    "'",
    "[",
    "]",
    "[[tenant]]",
    "[target]",
    "{",
    "}",
    ",",
    "\n",
    "#",
    "-1",
    "0",
    "nan",
    "inf",
    "1e999",
    "-0.0",
    "99999999999999999999",
    "\"x\"",
    "rate",
    "concurrency",
    "model",
    "\"resnet50\"",
    "batch = 129",
    "sla = {}",
    "arrival = { trace = \"/\" }",
    "\"1ns\"",
    "é",
    "\u{0}",
    "\\u0000",
    "\"\"\"",
    "true",
    "1979-05-27T07:32:00Z",
    "[1, 2]",
];

fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut s: Vec<char> = text.chars().collect();
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..=s.len());
        match rng.random_range(0..5) {
            0 => {
                let end = (at + rng.random_range(0..12)).min(s.len());
                s.drain(at..end);
            }
            1 | 2 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                s.splice(at..at, token.chars());
            }
            3 if !s.is_empty() => {
                let i = rng.random_range(0..s.len());
                s[i] = char::from(rng.random_range(0x20u8..0x7f));
            }
            _ => {
                // Duplicate a slice somewhere else (repeated keys, nested tables).
                let end = (at + rng.random_range(0..40)).min(s.len());
                let piece: Vec<char> = s[at..end].to_vec();
                let to = rng.random_range(0..=s.len());
                s.splice(to..to, piece);
            }
        }
    }
    s.into_iter().collect()
}

/// Checks one input; returns whether it was accepted.
fn check_session(text: &str, file: &Path) -> bool {
    match parse_session(text, file, &catalog()) {
        Ok(spec) => {
            let saved = to_toml(&spec);
            let again = parse_session(&saved, file, &catalog())
                .unwrap_or_else(|e| panic!("accepted, but its saved form fails: {e}\n{text}"));
            assert_eq!(again, spec, "save/load changed an accepted session\n{text}");
            true
        }
        Err(e) => {
            let lines = text.split('\n').count();
            assert!(
                e.line >= 1 && e.line <= lines,
                "line {} of {lines}: {e}",
                e.line
            );
            assert!(e.column >= 1, "{e}");
            assert!(!e.message.is_empty());
            false
        }
    }
}

#[test]
fn mutated_sessions_never_panic() {
    let corpus = corpus();
    let mut rng = StdRng::seed_from_u64(0x5e55_1017);
    // Relative to the shipped sessions, so mutated trace references resolve somewhere real.
    let file = Path::new("sessions/fuzz.toml");
    let mut accepted = 0;
    for _ in 0..CASES {
        let seed = &corpus[rng.random_range(0..corpus.len())];
        let text = mutate(&mut rng, seed);
        accepted += usize::from(check_session(&text, file));
    }
    // Both sides of the parser are exercised: enough mutants survive for the save/load property
    // to mean something, and enough are rejected for the error positions to be checked.
    println!("{accepted} of {CASES} mutated sessions accepted");
    assert!(
        (CASES / 50..=CASES * 3 / 4).contains(&accepted),
        "{accepted} accepted"
    );
}

#[test]
fn arbitrary_bytes_never_panic_the_session_parser() {
    let mut rng = StdRng::seed_from_u64(42);
    for _ in 0..CASES {
        let len = rng.random_range(0..200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        check_session(&String::from_utf8_lossy(&bytes), Path::new("x.toml"));
    }
}

fn recording_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(dir.path(), "fuzz", common::header()).unwrap();
    for snap in common::run(6, &["resnet50", "vgg16"]) {
        rec.record(&snap).unwrap();
    }
    std::fs::read(rec.path()).unwrap()
}

#[test]
fn damaged_recordings_never_panic_the_reader() {
    let base = recording_bytes();
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..CASES {
        let bytes: Vec<u8> = if i % 3 == 0 {
            let len = rng.random_range(0..300);
            (0..len).map(|_| rng.random()).collect()
        } else {
            let mut b = base.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..b.len());
                match rng.random_range(0..3) {
                    0 => b[at] = rng.random(),
                    1 => b.truncate(at),
                    _ => b.insert(at, b'\n'),
                }
                if b.is_empty() {
                    break;
                }
            }
            b
        };
        let lines = bytes.split(|b| *b == b'\n').count();
        if let Ok(rec) = parse_recording(Cursor::new(&bytes), Path::new("r.jsonl"))
            && let Some(d) = rec.damage
        {
            assert!(
                d.line >= 2 && d.line <= lines,
                "damage at line {} of {lines}",
                d.line
            );
        }
    }
}
