fn main() -> anyhow::Result<()> {
    rulebench::cli::main()
}
