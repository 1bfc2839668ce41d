"""The parts of bench/e2e.py: the city it registers, the processes that publish and listen, the plot."""
