"""The applications around the runtime: the ``prescient`` command hub, the ``prescient up``
launcher and its monitor, the container health check and the run summary picture. These may
import anything (the simulator, models, benchmarks); the runtime (``service`` outside ``app``)
never imports them."""
