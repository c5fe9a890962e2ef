fn main() { eprintln!("rulebench-ebpf: not implemented yet"); std::process::exit(2) }
