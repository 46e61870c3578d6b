"""What a lane agent wants this step, as decided from its own state (codes passed between kernels).

The per-agent decision kernels only read and write the agent's own records; whatever needs the
rest of the world (other agents, lane geometry) is returned as one of these codes and carried
out by the step loop (:mod:`.step`), which holds the arrays.
"""

INTENT_NONE = 0  # keep following the lane
INTENT_CHANGE_LANE = 1  # vehicle stuck behind a slower leader: may change lanes (RNG gate)
INTENT_CROSS = 2  # pedestrian at the start of a crossing: wait or go
INTENT_JAYWALK = 3  # jaywalker mid-block on a sidewalk: may step into the road (RNG gate)
