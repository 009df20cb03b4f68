//! Prints the compiled program of a flow file (development aid).
#![allow(clippy::unwrap_used, clippy::expect_used)]
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opts = troupe_flow::CompileOptions::default();
    match troupe_flow::compile_file(
        std::path::Path::new(&args[1]),
        args.get(2).map(String::as_str),
        &opts,
    ) {
        Ok(flows) => {
            if std::env::var("PY").is_ok() {
                print!("{}", troupe_flow::routers_py(&flows));
            } else {
                println!("{}", serde_json::to_string_pretty(&flows).unwrap());
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    }
}
