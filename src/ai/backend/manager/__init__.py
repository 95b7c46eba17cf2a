"""Control plane: REST API, keypairs, agents, actors, replicas, scheduler, autoscaler."""
