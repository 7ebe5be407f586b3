//! Replays every input the fuzzer kept — each target's corpus
//! (fuzz/corpus/<target>/) and every crash it found (fuzz/regressions/<target>/)
//! — through the same checks as the fuzz targets, on stable Rust and
//! without the fuzzer: `cargo test --test fuzz_replay`. `make fuzz` adds to them.

#[path = "targets.rs"]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

#[test]
fn every_kept_input_passes_its_targets_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut failed = Vec::new();
    let mut replayed = 0;
    for (name, target) in targets::TARGETS {
        let mut inputs = 0;
        for folder in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(folder).join(name)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                if catch_unwind(AssertUnwindSafe(|| target(&data))).is_err() {
                    failed.push(path.display().to_string());
                }
                inputs += 1;
            }
        }
        assert!(inputs > 0, "no corpus for the target {name}: run make fuzz");
        replayed += inputs;
    }
    assert!(
        failed.is_empty(),
        "inputs that fail their checks: {failed:#?}"
    );
    println!("{replayed} inputs replayed");
}
