from sclmd.cli import main

main()
