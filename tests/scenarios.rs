//! Runs the project's own scenario files (tests/scenarios/*.txt) through the engine.

use std::path::Path;

#[test]
fn project_scenarios_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/scenarios exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no scenario files in {}", dir.display());
    let mut report = imipd::conformance::Report::default();
    for path in &files {
        let text = std::fs::read_to_string(path).expect("scenario file is readable");
        report.merge(imipd::conformance::run(&path.display().to_string(), &text));
    }
    for failure in &report.failures {
        eprintln!("{failure}");
    }
    println!("project scenarios: {}", report.totals());
    assert!(report.failures.is_empty(), "{}", report.totals());
    assert!(report.passed >= 200, "only {} steps", report.passed);
}
