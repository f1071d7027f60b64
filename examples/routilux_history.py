from runtime import Flow, Routine

class SimpleProcessor(Routine):
    def __init__(self):
        super().__init__()
        self.input_slot = self.define_slot("input", handler=self.process)
        self.output_event = self.define_event("output", ["result"])

    def process(self, data=None, **kwargs):
        data_value = data or kwargs.get("data", "")
        result = f"Processed: {data_value}"
        self.emit("output", result=result)

class DataSource(Routine):
    def __init__(self):
        super().__init__()
        self.trigger_slot = self.define_slot("trigger", handler=self.send)
        self.output_event = self.define_event("output", ["data"])

    def send(self, **kwargs):
        for item in ["a", "b", "c"]:
            self.emit("output", data=item)

flow = Flow(flow_id="history_flow")

source = DataSource()
processor = SimpleProcessor()

source_id = flow.add_routine(source, "source")
processor_id = flow.add_routine(processor, "processor")

flow.connect(source_id, "output", processor_id, "input")

from runtime import JobState
job_state = flow.execute(source_id)
JobState.wait_for_completion(flow, job_state, timeout=2.0)

# Get all execution history
history = job_state.get_execution_history()
print(f"Total records: {len(history)}")

# Get history for specific routine
processor_history = job_state.get_execution_history(processor_id)
print(f"Processor executions: {len(processor_history)}")

# Print history
for record in history:
    print(f"  {record.routine_id}: {record.event_name} at {record.timestamp}")
