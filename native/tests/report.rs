//! `mmea report` on committed run records: one row per run with its setting, metrics, run time and peak
//! memory, and the command that reproduces it.

use std::process::Command;

#[test]
fn report_rows_carry_time_memory_and_the_command() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_mmea")).current_dir(root).args(["report", "results/zh_en-labelprop", "results/zh_en-clean"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.contains("| run time | peak memory |"), "{header}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| zh_en |")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    for row in rows {
        let cells: Vec<&str> = row.split(" | ").collect();
        let n = header.split(" | ").count();
        assert_eq!(cells.len(), n, "every row has every column: {row}");
        assert!(row.contains(" s |") && row.contains("GB RSS"), "{row}");
        assert!(row.contains("`mmea --backend cpu train"), "{row}");
    }
    // A directory that is not a finished run is refused with its path named.
    let bad = Command::new(env!("CARGO_BIN_EXE_mmea")).current_dir(root).args(["report", "docs"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("docs"), "{}", String::from_utf8_lossy(&bad.stderr));
}
