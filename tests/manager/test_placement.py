"""Placement rules (pure): selectors, GPU-free preference, whole vs fractional GPUs,
constraints, labels, the messages of what does not fit, and a property: never over-allocate."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ai.backend.common.dto.actor_spec import GpuConstraint, PlacementPolicy, PlacementSelector
from ai.backend.common.types.slots import ResourceSlot
from ai.backend.manager.services.scheduling.allocation import AgentState
from ai.backend.manager.services.scheduling.placement import (
    NoFit,
    Placement,
    PlacementPlanner,
    ReplicaRequest,
    place_replica,
)

GiB = 1 << 30


def gpu_agent(
    agent_id: str,
    gpus: int = 4,
    *,
    model: str = "A100-80G",
    memory: str = "80g",
    cpu: int = 16,
    labels: dict[str, str] | None = None,
    alive: bool = True,
) -> AgentState:
    return AgentState.from_json(
        id=agent_id,
        slots_total={
            "cpu": str(cpu),
            "mem": str(64 * GiB),
            "cuda.device": str(gpus),
            "cuda.shares": str(gpus),
        },
        devices=[
            {"id": f"{agent_id}-gpu{i}", "kind": "cuda", "model": model, "memory": memory}
            for i in range(gpus)
        ],
        labels=labels,
        alive=alive,
    )


def cpu_agent(agent_id: str, *, cpu: int = 16, labels: dict[str, str] | None = None) -> AgentState:
    return AgentState.from_json(
        id=agent_id, slots_total={"cpu": str(cpu), "mem": str(64 * GiB)}, devices=[], labels=labels
    )


def request(
    slots: dict[str, Any],
    *,
    selector: PlacementSelector = PlacementSelector.CONCENTRATED,
    labels: dict[str, str] | None = None,
    gpu: GpuConstraint | None = None,
    actor: str = "worker",
) -> ReplicaRequest:
    return ReplicaRequest.build(
        actor_name=actor,
        slots=ResourceSlot.parse(slots),
        gpu=gpu,
        placement=PlacementPolicy(selector=selector, labels=labels or {}),
    )


def placed(result: Placement | NoFit) -> Placement:
    assert isinstance(result, Placement), result
    return result


def not_placed(result: Placement | NoFit) -> str:
    assert isinstance(result, NoFit), result
    return result.message


def test_concentrated_packs_the_fullest_agent_that_fits() -> None:
    a, b = cpu_agent("a"), cpu_agent("b")
    b.allocate(ResourceSlot.parse({"cpu": 10}))
    planner = PlacementPlanner([a, b])
    assert placed(planner.place(request({"cpu": 4}))).agent_id == "b"
    assert placed(planner.place(request({"cpu": 4}))).agent_id == "a"  # b has 2 left


def test_dispersed_spreads_to_the_emptiest_agent() -> None:
    a, b = cpu_agent("a"), cpu_agent("b")
    b.allocate(ResourceSlot.parse({"cpu": 1}))
    planner = PlacementPlanner([a, b])
    dispersed = request({"cpu": 1}, selector=PlacementSelector.DISPERSED)
    assert [placed(planner.place(dispersed)).agent_id for _ in range(3)] == ["a", "a", "b"]


def test_round_robin_cycles_through_agents_and_keeps_its_cursor() -> None:
    cursors: dict[str, str] = {}
    agents = [cpu_agent("c"), cpu_agent("a"), cpu_agent("b")]
    planner = PlacementPlanner(agents, round_robin_cursors=cursors)
    rr = request({"cpu": 1}, selector=PlacementSelector.ROUND_ROBIN)
    assert [placed(planner.place(rr)).agent_id for _ in range(4)] == ["a", "b", "c", "a"]
    assert cursors == {"worker": "a"}
    again = PlacementPlanner([cpu_agent("a"), cpu_agent("b")], round_robin_cursors=cursors)
    assert placed(again.place(rr)).agent_id == "b"


def test_cpu_only_replicas_stay_off_gpu_agents_while_others_have_room() -> None:
    planner = PlacementPlanner([gpu_agent("a-gpu"), cpu_agent("b-cpu", cpu=3)])
    for selector in PlacementSelector:
        assert placed(planner.place(request({"cpu": 1}, selector=selector))).agent_id == "b-cpu"
    # the CPU agent is full now: the GPU agent takes CPU-only replicas rather than none
    assert placed(planner.place(request({"cpu": 1}))).agent_id == "a-gpu"


def test_gpu_replicas_go_to_gpu_agents() -> None:
    result = place_replica(request({"cpu": 1, "cuda.device": 1}), [cpu_agent("a"), gpu_agent("b")])
    assert placed(result).agent_id == "b"


def test_two_half_gpus_share_a_device_and_a_third_takes_the_next() -> None:
    planner = PlacementPlanner([gpu_agent("a", gpus=2)])
    half = request({"cpu": 1, "cuda.shares": "0.5"})
    devices = [placed(planner.place(half)).device_ids for _ in range(3)]
    assert devices == [("a-gpu0",), ("a-gpu0",), ("a-gpu1",)]


def test_shares_pack_onto_the_most_used_device_that_still_fits() -> None:
    agent = gpu_agent("a", gpus=3)
    agent.allocate(ResourceSlot.parse({"cuda.shares": "0.5"}), ["a-gpu1"])
    agent.allocate(ResourceSlot.parse({"cuda.shares": "0.75"}), ["a-gpu2"])
    planner = PlacementPlanner([agent])
    quarter = request({"cuda.shares": "0.25"})
    assert placed(planner.place(quarter)).device_ids == ("a-gpu2",)  # 0.75 → 1.0
    assert placed(planner.place(quarter)).device_ids == ("a-gpu1",)  # then the 0.5 one
    assert placed(planner.place(request({"cuda.shares": "0.6"}))).device_ids == ("a-gpu0",)


def test_whole_devices_are_taken_first_fit_and_never_from_a_shared_device() -> None:
    agent = gpu_agent("a", gpus=4)
    agent.allocate(ResourceSlot.parse({"cuda.shares": "0.1"}), ["a-gpu0"])
    planner = PlacementPlanner([agent])
    assert placed(planner.place(request({"cuda.device": 2}))).device_ids == ("a-gpu1", "a-gpu2")
    message = not_placed(planner.place(request({"cuda.device": 2})))
    assert message == "needs 2 cuda.device, the best matching agent has 1 free"


def test_a_whole_device_takes_no_shares() -> None:
    agent = gpu_agent("a", gpus=1)
    agent.allocate(ResourceSlot.parse({"cuda.device": 1}), ["a-gpu0"])
    message = not_placed(place_replica(request({"cuda.shares": "0.5"}), [agent]))
    assert message == "needs 0.5 cuda.shares of one GPU, the best matching GPU has 0 free"


def test_gpu_model_glob_and_memory_select_devices() -> None:
    agents = [gpu_agent("a", model="A100-40G", memory="40g"), gpu_agent("b", model="H100-80G")]
    h100 = request({"cuda.device": 1}, gpu=GpuConstraint(model="h100*"))
    assert placed(place_replica(h100, agents)).agent_id == "b"
    big = GpuConstraint.model_validate({"min_memory": "80g"})
    assert placed(place_replica(request({"cuda.device": 1}, gpu=big), agents)).agent_id == "b"
    strict = GpuConstraint.model_validate({"model": "A100*", "min_memory": "80g"})
    message = not_placed(place_replica(request({"cuda.device": 1}, gpu=strict), agents))
    assert message == "no GPU matches model 'A100*' with ≥ 80g"


def test_devices_are_chosen_among_those_matching_the_constraint() -> None:
    agent = AgentState.from_json(
        id="mixed",
        slots_total={"cpu": "8", "cuda.device": "2"},
        devices=[
            {"id": "0", "model": "T4", "memory": 16 * GiB},
            {"id": "1", "model": "A100-80G", "memory": "80g"},
        ],
    )
    a100 = request({"cuda.device": 1}, gpu=GpuConstraint(model="A100*"))
    assert placed(place_replica(a100, [agent])).device_ids == ("1",)


def test_labels_must_all_match() -> None:
    agents = [
        cpu_agent("a", labels={"zone": "a"}),
        cpu_agent("b", labels={"zone": "b", "ssd": "1"}),
    ]
    assert placed(place_replica(request({"cpu": 1}, labels={"zone": "b"}), agents)).agent_id == "b"
    message = not_placed(place_replica(request({"cpu": 1}, labels={"zone": "c"}), agents))
    assert message == "no alive agent matches labels {zone: c}"


def test_dead_agents_take_nothing() -> None:
    message = not_placed(place_replica(request({"cpu": 1}), [gpu_agent("a", alive=False)]))
    assert message == "no alive agent"


def test_nothing_fits_names_the_missing_resource() -> None:
    agent = gpu_agent("a", gpus=1, cpu=4)
    assert (
        not_placed(place_replica(request({"cpu": 1, "cuda.device": 2}), [agent]))
        == "needs 2 cuda.device, the best matching agent has 1 free"
    )
    assert (
        not_placed(place_replica(request({"cpu": 8}), [agent]))
        == "needs 8 cpu, the best agent has 4 free"
    )
    assert (
        not_placed(place_replica(request({"mem": "128g"}), [agent]))
        == "needs 128g mem, the best agent has 64g free"
    )
    assert not_placed(place_replica(request({"cuda.device": 1}), [cpu_agent("b")])) == (
        "no alive agent has a GPU"
    )


def test_resources_spread_over_agents_are_not_enough_together() -> None:
    a, b = cpu_agent("a", cpu=4), cpu_agent("b", cpu=4)
    a.allocate(ResourceSlot.parse({"mem": "60g"}))
    b.allocate(ResourceSlot.parse({"cpu": 4}))
    message = not_placed(place_replica(request({"cpu": 2, "mem": "8g"}), [a, b]))
    assert message == "needs 2 cpu + 8g mem on one agent; no agent has all of it free at once"


def test_agents_that_failed_to_start_the_actor_are_passed_over() -> None:
    agents = [cpu_agent("a"), cpu_agent("b")]
    assert (
        placed(place_replica(request({"cpu": 1}), agents, excluded_agent_ids={"a"})).agent_id == "b"
    )
    message = not_placed(place_replica(request({"cpu": 1}), agents, excluded_agent_ids={"a", "b"}))
    assert "recently failed to start a replica of worker (a, b)" in message


def test_used_slots_count_gpus_from_the_devices() -> None:
    agent = gpu_agent("a", gpus=3)
    agent.allocate(ResourceSlot.parse({"cpu": 2, "cuda.device": 1}), ["a-gpu0"])
    agent.allocate(ResourceSlot.parse({"cpu": 1, "cuda.shares": "0.25"}), ["a-gpu1"])
    agent.allocate(ResourceSlot.parse({"cpu": 1, "cuda.shares": "0.5"}), ["a-gpu1"])
    assert agent.slots_used.to_json() == {"cpu": "4", "cuda.device": "1", "cuda.shares": "0.75"}


# -- property: whatever is asked, in any order, no device and no agent is over-allocated ---

request_slots = st.one_of(
    st.builds(lambda c: {"cpu": c}, st.integers(1, 6)),
    st.builds(lambda c, n: {"cpu": c, "cuda.device": n}, st.integers(0, 3), st.integers(1, 4)),
    st.builds(
        lambda c, s: {"cpu": c, "cuda.shares": s},
        st.integers(0, 2),
        st.sampled_from(["0.1", "0.25", "0.3", "0.5", "0.75", "1"]),
    ),
)
requests = st.lists(
    st.tuples(request_slots, st.sampled_from(list(PlacementSelector)), st.booleans()),
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    gpu_counts=st.lists(st.integers(0, 4), min_size=1, max_size=5),
    asked=requests,
    held=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), max_size=4),
)
def test_random_requests_never_over_allocate(
    gpu_counts: list[int],
    asked: list[tuple[dict[str, Any], PlacementSelector, bool]],
    held: list[tuple[int, int]],
) -> None:
    agents = [gpu_agent(f"agent{i}", gpus=n, cpu=8) for i, n in enumerate(gpu_counts)]
    allocations: list[tuple[str, ResourceSlot, tuple[str, ...]]] = []
    for agent_index, device_index in held:  # some devices already held whole
        agent = agents[agent_index % len(agents)]
        if device_index < len(agent.devices) and agent.usage[device_index].is_free:
            one_device = ResourceSlot.parse({"cuda.device": 1})
            held_ids = (agent.devices[device_index].id,)
            agent.allocate(one_device, held_ids)
            allocations.append((agent.id, one_device, held_ids))
    planner = PlacementPlanner(agents)
    for wanted, selector, labelled in asked:
        req = request(wanted, selector=selector, labels={"zone": "x"} if labelled else None)
        result = planner.place(req)
        if isinstance(result, Placement):
            assert not labelled  # no agent has the label
            assert len(result.device_ids) == (req.device_count or (1 if req.share else 0))
            allocations.append((result.agent_id, result.slots, result.device_ids))
    # recount from the placements alone, not from the planner's state
    cpu: dict[str, Decimal] = defaultdict(Decimal)
    whole: dict[str, int] = defaultdict(int)
    shares: dict[str, Decimal] = defaultdict(Decimal)
    for agent_id, slots, device_ids in allocations:
        cpu[agent_id] += slots.amount("cpu")
        for device_id in device_ids:
            if slots.amount("cuda.device"):
                whole[device_id] += 1
            else:
                shares[device_id] += slots.amount("cuda.shares")
    for agent in agents:
        assert cpu[agent.id] <= 8
        assert not agent.over_allocated_devices()
    for device_id in whole.keys() | shares.keys():
        assert whole[device_id] <= 1
        assert shares[device_id] <= 1
        assert not (whole[device_id] and shares[device_id])
