"""`python -m frontend` serves the demo on TIPAI_DEMO_HOST:TIPAI_DEMO_PORT."""

from frontend.app import main

main()
