fn main() -> anyhow::Result<()> {
    huimin::cli::run()
}
