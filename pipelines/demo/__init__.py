"""The demo wing: the demo flow, its sample site, simulated annotators and the local service supervisors."""
