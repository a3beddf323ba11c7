from faas.cli import main

main()
