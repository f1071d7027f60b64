from runtime import Flow, Routine

class DataSource(Routine):
    def __init__(self):
        super().__init__()
        self.trigger_slot = self.define_slot("trigger", handler=self.generate)
        self.output_event = self.define_event("output", ["data"])

    def generate(self, count=3, **kwargs):
        count = count or kwargs.get("count", 3)

        # Use get_execution_context() for convenient access
        ctx = self.get_execution_context()
        if ctx:
            ctx.job_state.update_routine_state(ctx.routine_id, {"generated_count": count})

        for i in range(count):
            self.emit("output", data=f"item_{i}")

class Validator(Routine):
    def __init__(self):
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self.validate)
        self.output_event = self.define_event("output", ["data", "valid"])

    def validate(self, data=None, **kwargs):
        data_value = data or kwargs.get("data", "")

        # Use get_execution_context() for convenient access
        ctx = self.get_execution_context()
        if not ctx:
            return

        current_state = ctx.job_state.get_routine_state(ctx.routine_id) or {}

        # Simple validation: must contain "item"
        is_valid = "item" in str(data_value)

        if is_valid:
            valid_count = current_state.get("valid_count", 0) + 1
            ctx.job_state.update_routine_state(
                ctx.routine_id, {"valid_count": valid_count, "last_valid": data_value}
            )
        else:
            invalid_count = current_state.get("invalid_count", 0) + 1
            ctx.job_state.update_routine_state(
                ctx.routine_id, {"invalid_count": invalid_count, "last_invalid": data_value}
            )

        self.emit("output", data=data_value, valid=is_valid)

class Aggregator(Routine):
    def __init__(self):
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self.aggregate)

    def aggregate(self, data=None, valid=None, **kwargs):
        data_value = data or kwargs.get("data", "")
        is_valid = valid if valid is not None else kwargs.get("valid", False)

        # Use get_execution_context() for convenient access
        ctx = self.get_execution_context()
        if ctx:
            current_state = ctx.job_state.get_routine_state(ctx.routine_id) or {}

            total_received = current_state.get("total_received", 0) + 1
            total_valid = current_state.get("total_valid", 0)
            if is_valid:
                total_valid += 1

            ctx.job_state.update_routine_state(
                ctx.routine_id, {"total_received": total_received, "total_valid": total_valid}
            )

        print(f"Aggregated: {data_value} (valid={is_valid})")

def main():
    flow = Flow(flow_id="stateful_workflow")

    source = DataSource()
    validator = Validator()
    aggregator = Aggregator()

    source_id = flow.add_routine(source, "source")
    validator_id = flow.add_routine(validator, "validator")
    agg_id = flow.add_routine(aggregator, "aggregator")

    flow.connect(source_id, "output", validator_id, "input")
    flow.connect(validator_id, "output", agg_id, "input")

    from runtime import JobState
    job_state = flow.execute(source_id, entry_params={"count": 5})
    JobState.wait_for_completion(flow, job_state, timeout=2.0)

    print("\n=== Execution State ===")
    source_state = job_state.get_routine_state(source_id)
    validator_state = job_state.get_routine_state(validator_id)
    aggregator_state = job_state.get_routine_state(agg_id)

    print(f"Source generated: {source_state.get('generated_count', 0)}")
    print(
        f"Validator - Valid: {validator_state.get('valid_count', 0)}, "
        f"Invalid: {validator_state.get('invalid_count', 0)}"
    )
    print(
        f"Aggregator - Total: {aggregator_state.get('total_received', 0)}, "
        f"Valid: {aggregator_state.get('total_valid', 0)}"
    )
    print(f"\nExecution status: {job_state.status}")

if __name__ == "__main__":
    main()
