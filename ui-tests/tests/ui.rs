//! Compile-pass and compile-fail cases for the macros. Regenerate the
//! expected output with `TRYBUILD=overwrite cargo test -p nats-trace-ui-tests`
//! and read every `.stderr`: it is what users see.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("pass/*.rs");
    cases.compile_fail("fail/*.rs");
}
