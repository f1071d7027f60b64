from runtime import Flow, Routine

class DataCollector(Routine):
    def __init__(self):
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self.collect)

    def collect(self, data=None, **kwargs):
        data_value = data or kwargs.get("data", "")

        # Use get_execution_context() for convenient access
        ctx = self.get_execution_context()
        if ctx:
            # Append to shared log
            ctx.job_state.append_to_shared_log(
                {"action": "collected", "data": data_value, "routine": "collector"}
            )

            # Update shared data
            collected_items = ctx.job_state.get_shared_data("collected_items", [])
            collected_items.append(data_value)
            ctx.job_state.update_shared_data("collected_items", collected_items)

class DataProcessor(Routine):
    def __init__(self):
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self.process)
        self.output_event = self.define_event("output", ["result"])

    def process(self, data=None, **kwargs):
        data_value = data or kwargs.get("data", "")

        # Use get_execution_context() for convenient access
        ctx = self.get_execution_context()
        if ctx:
            # Read shared data
            collected_items = ctx.job_state.get_shared_data("collected_items", [])

            # Process with context
            result = f"Processed {len(collected_items)} items, current: {data_value}"

            # Append to shared log
            ctx.job_state.append_to_shared_log(
                {"action": "processed", "data": data_value, "result": result}
            )

            self.emit("output", result=result)

class DataSource(Routine):
    def __init__(self):
        super().__init__()
        self.trigger_slot = self.define_slot("trigger", handler=self.send)
        self.output_event = self.define_event("output", ["data"])

    def send(self, **kwargs):
        for item in ["a", "b", "c"]:
            self.emit("output", data=item)

flow = Flow(flow_id="shared_data_flow")

source = DataSource()
collector = DataCollector()
processor = DataProcessor()

source_id = flow.add_routine(source, "source")
collector_id = flow.add_routine(collector, "collector")
processor_id = flow.add_routine(processor, "processor")

flow.connect(source_id, "output", collector_id, "input")
flow.connect(source_id, "output", processor_id, "input")

from runtime import JobState
job_state = flow.execute(source_id)
JobState.wait_for_completion(flow, job_state, timeout=2.0)

# Check shared data
collected_items = job_state.get_shared_data("collected_items", [])
print(f"Collected items: {collected_items}")

# Check shared log
log = job_state.get_shared_log()
print(f"Log entries: {len(log)}")
for entry in log:
    print(f"  {entry}")
