from ai.backend.cli.main import main

main(prog_name="backend.ai")
