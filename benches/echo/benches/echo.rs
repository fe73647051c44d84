//! `cargo bench -p echo-bench --bench echo -- [COMMAND] [OPTIONS]`: see `src/lib.rs`.

fn main() {
    echo_bench::main();
}
