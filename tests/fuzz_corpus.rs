//! The fuzz targets' checks, run on stable Rust over every file of the committed corpus
//! (`fuzz/corpus/<target>/`): the seeds made from the codec's test vectors and every input a
//! fuzzing run found worth keeping. The logic is `fuzz/src/checks.rs`, the very file the
//! libFuzzer targets call, included here so nothing about libFuzzer reaches this crate.
//!
//! To run one input: `PERCORE_FUZZ_INPUT=path/to/file cargo test --test fuzz_corpus one_input -- --nocapture`
//! (the target is the name of the file's directory).

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOC: checks::CountingAlloc = checks::CountingAlloc;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus").join(target)
}

/// Run `target`'s check over each file of its corpus; fail naming every input that fails.
fn run_corpus(target: &str) {
    let check = checks::check_for(target).expect("known target");
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("read corpus file");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            failures.push(format!("{}: {msg}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} corpus inputs fail:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn head_corpus() {
    run_corpus("head");
}

#[test]
fn chunked_corpus() {
    run_corpus("chunked");
}

#[test]
fn driver_corpus() {
    run_corpus("driver");
}

#[test]
fn differential_corpus() {
    run_corpus("differential");
}

#[test]
fn proxy_corpus() {
    run_corpus("proxy");
}

#[test]
fn ws_frame_corpus() {
    run_corpus("ws_frame");
}

#[test]
fn ws_inflate_corpus() {
    run_corpus("ws_inflate");
}

/// Every target directory has a check, and every check a directory.
#[test]
fn corpus_directories_match_targets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("corpus");
    for entry in std::fs::read_dir(&root).expect("fuzz/corpus") {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(checks::check_for(&name).is_some(), "fuzz/corpus/{name} has no target");
    }
    for target in ["head", "chunked", "driver", "differential", "proxy", "ws_frame", "ws_inflate"] {
        assert!(corpus_dir(target).is_dir(), "fuzz/corpus/{target} missing");
    }
}

/// Reproduce one input (a crash file from `fuzz/artifacts/`, or a corpus file) under the
/// check of the target named by `PERCORE_FUZZ_TARGET`, or by the file's directory.
#[test]
fn one_input() {
    let Some(path) = std::env::var_os("PERCORE_FUZZ_INPUT") else { return };
    let path = PathBuf::from(path);
    let target = std::env::var("PERCORE_FUZZ_TARGET").unwrap_or_else(|_| {
        path.parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let check =
        checks::check_for(&target).unwrap_or_else(|| panic!("no target {target:?}; set PERCORE_FUZZ_TARGET"));
    check(&std::fs::read(&path).expect("read input"));
}
