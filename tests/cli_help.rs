//! Help is UI: every `--help` and `--version` is pinned as a case file under `tests/cmd/`.
//! Regenerate after an intended change with `TRYCMD=overwrite cargo test --features failpoints -- cli_help`.

#[test]
fn cli_cases() {
    trycmd::TestCases::new()
        .register_bin(
            "keyferry",
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_keyferry")),
        )
        .default_bin_name("keyferry")
        .env("COLUMNS", "100")
        .case("tests/cmd/*.toml");
}
